"""Flask CLI commands: thin adapters over the same services the API uses."""
from __future__ import annotations

import json

import click
from flask import Flask, current_app
from werkzeug.security import generate_password_hash

from .queue import run_worker
from .schedule import run_scheduler
from .services.metrics import calculate_metrics
from .tasks import calculation_settings
from .validation import ValidationError, check_range, parse_timestamp


def _parse_option(value: str | None, name: str) -> object:
    if value is None:
        return None
    try:
        return parse_timestamp(value, name)
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{name}") from None


def init_app(app: Flask) -> None:
    @app.cli.command("calculate-metrics")
    @click.option("--from", "start", help="Recompute windows from this RFC 3339 time (with --till).")
    @click.option("--till", "end", help="…up to this RFC 3339 time, exclusive.")
    def calculate_metrics_command(start: str | None, end: str | None) -> None:
        """Compute pending metrics windows now, synchronously (for cron jobs outside RQ)."""
        if (start is None) != (end is None):
            raise click.UsageError("give both --from and --till, or neither")
        start_at, end_at = _parse_option(start, "from"), _parse_option(end, "till")
        try:
            check_range(start_at, end_at)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise click.BadParameter(exc.message, param_hint="--till") from None
        summary = calculate_metrics(calculation_settings(current_app), start=start_at, end=end_at,  # type: ignore[arg-type]
                                    trigger="cli")
        click.echo(json.dumps(summary.to_json()))

    @app.cli.command("hash-password")
    @click.password_option(help="The dashboard password to hash (asked for when not given).")
    def hash_password_command(password: str) -> None:
        """Print a hash of a password for ADMIN_PASSWORD_HASH."""
        click.echo(generate_password_hash(password))

    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
    def worker_command(burst: bool) -> None:
        """Run an RQ worker for the app's queues."""
        run_worker(burst=burst)

    @app.cli.command("scheduler")
    @click.option("--interval", default=30, show_default=True, help="Seconds between checks for due jobs.")
    def scheduler_command(interval: int) -> None:
        """Register the periodic jobs and run rq-scheduler (run exactly one)."""
        run_scheduler(interval)
