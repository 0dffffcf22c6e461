"""Tables of the service as typed SQLAlchemy models.

The migrations in `migrations/` create these tables; the models exist so the
schema is readable in one place and so migrations can be checked against them.
Hot paths (event insert, metrics calculation) use SQL statements directly.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects.postgresql import JSONB

from .extensions import db


class Event(db.Model):
    """One thing a user did, as reported by a client backend."""

    __tablename__ = "events"

    id: so.Mapped[uuid.UUID] = so.mapped_column(sa.Uuid, primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    action: so.Mapped[str] = so.mapped_column(sa.Text)
    meta: so.Mapped[dict[str, Any]] = so.mapped_column("metadata", JSONB, server_default=sa.text("'{}'::jsonb"))
    occurred_at: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True))
    received_at: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())

    __table_args__ = (
        # one user's events in a time range, in time order (and keyset pages of it)
        sa.Index("ix_events_user_time", "user_id", "occurred_at", "id"),
        # all events in a time range, in time order; also the metrics calculation's scan
        sa.Index("ix_events_time", "occurred_at", "id"),
    )


class UserActivityMetric(db.Model):
    """How many events one user produced in one window, and of which actions."""

    __tablename__ = "user_activity_metrics"

    user_id: so.Mapped[int] = so.mapped_column(sa.BigInteger, primary_key=True)
    window_start: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True), primary_key=True)
    window_end: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True))
    event_count: so.Mapped[int] = so.mapped_column(sa.Integer)
    actions: so.Mapped[dict[str, int]] = so.mapped_column(JSONB)
    computed_at: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())

    __table_args__ = (sa.Index("ix_user_activity_metrics_window", "window_start", "user_id"),)


class MetricsWindow(db.Model):
    """The calculation's ledger: a window is done when computed and not stale.

    A late event for a closed window marks it stale (or creates it stale), so
    the next run knows to recompute it.
    """

    __tablename__ = "metrics_windows"

    window_start: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True), primary_key=True)
    window_end: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True))
    computed_at: so.Mapped[datetime | None] = so.mapped_column(sa.DateTime(timezone=True))
    stale: so.Mapped[bool] = so.mapped_column(sa.Boolean, server_default=sa.false())

    __table_args__ = (
        sa.Index("ix_metrics_windows_stale", "window_start", postgresql_where=sa.text("stale")),
    )


class CalculationRun(db.Model):
    """One execution of the metrics calculation, for the history and job summaries."""

    __tablename__ = "calculation_runs"

    id: so.Mapped[int] = so.mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    trigger: so.Mapped[str] = so.mapped_column(sa.Text)
    job_id: so.Mapped[str | None] = so.mapped_column(sa.Text)
    started_at: so.Mapped[datetime] = so.mapped_column(sa.DateTime(timezone=True))
    finished_at: so.Mapped[datetime | None] = so.mapped_column(sa.DateTime(timezone=True))
    status: so.Mapped[str] = so.mapped_column(sa.Text)
    first_window: so.Mapped[datetime | None] = so.mapped_column(sa.DateTime(timezone=True))
    last_window: so.Mapped[datetime | None] = so.mapped_column(sa.DateTime(timezone=True))
    windows: so.Mapped[int] = so.mapped_column(sa.Integer, server_default="0")
    users: so.Mapped[int] = so.mapped_column(sa.Integer, server_default="0")
    events: so.Mapped[int] = so.mapped_column(sa.BigInteger, server_default="0")
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_calculation_runs_started", sa.text("started_at DESC")),)
