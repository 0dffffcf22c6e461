"""The tables of the service, as SQLAlchemy Core `Table`s on one `MetaData`.

The migrations in `migrations/` create them; these definitions are what the
queries are written against, and `tests/test_schema.py` checks that a migrated
database matches them column for column and index for index.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

_TIME = sa.DateTime(timezone=True)

# Range-partitioned on occurred_at (see `app/core/partitions.py`); the partitions are created
# by the migrations, the periodic job and on demand (`app/services/partitions.py`), never here.
# Every key starts with user_id so the table can be distributed by user (docs/storage.md, "Scaling out").
events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Uuid, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("occurred_at", _TIME, nullable=False),
    sa.Column("received_at", _TIME, nullable=False, server_default=sa.func.now()),
    # one user's events in a time range, in time order (and keyset pages of it); a retry
    # carrying the same id and time lands on it
    sa.PrimaryKeyConstraint("user_id", "occurred_at", "id", name="pk_events"),
    sa.CheckConstraint("user_id > 0", name="ck_events_user_id_positive"),
    sa.CheckConstraint("action <> '' AND length(action) <= 255", name="ck_events_action_length"),
    sa.CheckConstraint("jsonb_typeof(metadata) = 'object'", name="ck_events_metadata_object"),
    # all events in a time range, in time order; also the metrics calculation's scan
    sa.Index("ix_events_time", "occurred_at", "id"),
    # the list's `action` filter without a user, in time order
    sa.Index("ix_events_action_time", "action", "occurred_at", "id"),
    # the list's `meta.KEY=VALUE` filters: JSONB containment (`@>`)
    sa.Index("ix_events_metadata", "metadata", postgresql_using="gin", postgresql_ops={"metadata": "jsonb_path_ops"}),
    postgresql_partition_by="RANGE (occurred_at)",
)

# The client ids: one row per event whose id the client chose, so a retry of it is
# stored once whatever time it carries. Ids the service makes are UUIDv7 and never
# collide, so they need no row here. occurred_at locates the stored event (and lets
# retention forget keys whose events it dropped).
event_keys = sa.Table(
    "event_keys", metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("occurred_at", _TIME, nullable=False),
    sa.Index("ix_event_keys_occurred", "occurred_at"),
)

# How many events one user produced in one window, and of which actions.
user_activity_metrics = sa.Table(
    "user_activity_metrics", metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("window_start", _TIME, primary_key=True),
    sa.Column("window_end", _TIME, nullable=False),
    sa.Column("event_count", sa.Integer, nullable=False),
    sa.Column("actions", JSONB, nullable=False),
    sa.Column("computed_at", _TIME, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("window_end > window_start", name="ck_metrics_window_order"),
    sa.Index("ix_user_activity_metrics_window", "window_start", "user_id"),
)

# The calculation's ledger: a window is done when computed and not stale. A late
# event for a closed window marks it stale (or creates it stale), so the next
# run knows to recompute it.
metrics_windows = sa.Table(
    "metrics_windows", metadata,
    sa.Column("window_start", _TIME, primary_key=True),
    sa.Column("window_end", _TIME, nullable=False),
    sa.Column("computed_at", _TIME),
    sa.Column("stale", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_metrics_windows_stale", "window_start", postgresql_where=sa.text("stale")),
)

# One execution of the metrics calculation, for the history and job summaries.
calculation_runs = sa.Table(
    "calculation_runs", metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("trigger", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text),
    sa.Column("started_at", _TIME, nullable=False),
    sa.Column("finished_at", _TIME),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("first_window", _TIME),
    sa.Column("last_window", _TIME),
    sa.Column("windows", sa.Integer, nullable=False, server_default="0"),
    sa.Column("users", sa.Integer, nullable=False, server_default="0"),
    sa.Column("events", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Index("ix_calculation_runs_started", sa.text("started_at DESC")),
)
