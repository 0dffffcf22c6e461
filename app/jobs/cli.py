"""Flask CLI commands: thin adapters over the same services and input rules the API uses."""
from __future__ import annotations

import json

import click
from flask import Flask
from werkzeug.security import generate_password_hash

from ..core.errors import ValidationError
from ..core.validation import parse_calculation_range
from ..extensions import database, now, redis_client, settings
from ..services.calculation import calculate_metrics
from .schedule import run_scheduler
from .tasks import calculation_settings, summary_fields


def init_app(app: Flask) -> None:
    @app.cli.command("calculate-metrics")
    @click.option("--from", "start", help="Recompute windows from this RFC 3339 time (with --till).")
    @click.option("--till", "end", help="…up to this RFC 3339 time, exclusive.")
    def calculate_metrics_command(start: str | None, end: str | None) -> None:
        """Compute pending metrics windows now, synchronously (for cron jobs outside RQ)."""
        try:
            start_at, end_at = parse_calculation_range(start, end)
        except ValidationError as exc:
            if start is None or end is None:
                raise click.UsageError("give both --from and --till, or neither") from None
            raise click.BadParameter(exc.message, param_hint=f"--{exc.field}") from None
        summary = calculate_metrics(database(), calculation_settings(settings()), now=now(), start=start_at,
                                    end=end_at, trigger="cli")
        click.echo(json.dumps(summary_fields(summary)))

    @app.cli.command("hash-password")
    @click.password_option(help="The dashboard password to hash (asked for when not given).")
    def hash_password_command(password: str) -> None:
        """Print a hash of a password for ADMIN_PASSWORD_HASH."""
        click.echo(generate_password_hash(password))

    @app.cli.command("scheduler")
    @click.option("--interval", default=30, show_default=True, help="Seconds between checks for due jobs.")
    def scheduler_command(interval: int) -> None:
        """Register the periodic jobs and run rq-scheduler (run exactly one)."""
        run_scheduler(redis_client(), settings(), interval)
