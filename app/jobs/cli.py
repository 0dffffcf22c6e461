"""Flask CLI commands: thin adapters over the same services and input rules the API uses."""
from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from typing import Any

import click
from flask import Flask
from werkzeug.security import generate_password_hash

from ..core.errors import ValidationError
from ..core.validation import parse_calculation_range
from ..extensions import database, now, runtime, settings
from ..core.times import format_rfc3339
from ..services.calculation import CalculationProgress, calculate_metrics
from ..services.retention import apply_retention
from .schedule import run_scheduler
from .storage import report_fields, retention_policy
from .tasks import calculation_settings, summary_fields


class TerminalProgress:
    """A progress bar of the windows counted, drawn once the run knows how many there are."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.bar: Any = None

    def __call__(self, progress: CalculationProgress) -> None:
        if self.bar is None:
            self.bar = self.stack.enter_context(click.progressbar(
                length=progress.total, label="Counting windows", show_pos=True,
                item_show_func=lambda window: format_rfc3339(window) if window else None))
        self.bar.update(progress.done - self.bar.pos, progress.window)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.current_item = None  # every window is counted: name none
            self.bar.update(self.bar.length - self.bar.pos)


def init_app(app: Flask) -> None:
    @app.cli.command("calculate-metrics")
    @click.option("--from", "start", help="Recompute windows from this RFC 3339 time (with --till).")
    @click.option("--till", "end", help="…up to this RFC 3339 time, exclusive.")
    def calculate_metrics_command(start: str | None, end: str | None) -> None:
        """Compute pending metrics windows now, synchronously (for cron jobs outside RQ)."""
        moment = now()
        try:
            start_at, end_at = parse_calculation_range(start, end, now=moment,
                                                       max_range=settings().max_calculation_range)
        except ValidationError as exc:
            if start is None or end is None:
                raise click.UsageError("give both --from and --till, or neither") from None
            raise click.BadParameter(exc.message, param_hint=f"--{exc.field}") from None
        with ExitStack() as stack:
            # A person at a terminal sees how far a long catch-up is; a script gets the summary alone.
            bar = TerminalProgress(stack) if sys.stdout.isatty() else None
            summary = calculate_metrics(database(), calculation_settings(settings()), now=moment, start=start_at,
                                        end=end_at, trigger="cli", progress=bar)
            if bar is not None:
                bar.finish()
        click.echo(json.dumps(summary_fields(summary)))

    @app.cli.command("apply-retention")
    @click.option("--dry-run", is_flag=True, help="Only say which partitions and rows would go.")
    def apply_retention_command(dry_run: bool) -> None:
        """Drop event partitions beyond EVENTS_RETENTION_DAYS, delete metrics beyond METRICS_RETENTION_DAYS."""
        report = apply_retention(database(), retention_policy(settings()), now(), dry_run=dry_run)
        click.echo(json.dumps(report_fields(report)))

    @app.cli.command("hash-password")
    @click.password_option(help="The dashboard password to hash (asked for when not given).")
    def hash_password_command(password: str) -> None:
        """Print a hash of a password for ADMIN_PASSWORD_HASH."""
        click.echo(generate_password_hash(password))

    @app.cli.command("scheduler")
    @click.option("--interval", default=30, show_default=True, help="Seconds between checks for due jobs.")
    def scheduler_command(interval: int) -> None:
        """Register the periodic jobs and run rq-scheduler (run exactly one)."""
        run_scheduler(runtime().background_redis, settings(), now, interval)
