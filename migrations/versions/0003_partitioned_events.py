"""events partitioned by day on occurred_at, with the client ids in a keys table

Moves every existing event into a table range-partitioned on occurred_at (one
partition per UTC day that holds events, plus today and the next week), keyed
(user_id, occurred_at, id); the ids move to `event_keys` keyed (user_id, id),
which keeps a retried client id stored once across partitions. The rows are
copied before the keys and indexes are built, so each index is built once,
sorted, rather than grown row by row. The partition logic is written out here
rather than imported, so this revision does what it did when it was written.

Revision ID: 0003_partitioned_events
Revises: 0002_metrics
Create Date: 2026-11-27
"""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = "0003_partitioned_events"
down_revision = "0002_metrics"
branch_labels = None
depends_on = None

DAY = timedelta(days=1)
ORIGIN = datetime(2000, 1, 3, tzinfo=timezone.utc)
DAYS_AHEAD = 7

_COLUMNS = "id, user_id, action, metadata, occurred_at, received_at"

_CREATE_EVENTS = """
CREATE TABLE events (
    id uuid NOT NULL,
    user_id bigint NOT NULL,
    action text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_events_user_id_positive CHECK (user_id > 0),
    CONSTRAINT ck_events_action_length CHECK (action <> '' AND length(action) <= 255),
    CONSTRAINT ck_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
) PARTITION BY RANGE (occurred_at)
"""


def _day(moment: datetime) -> datetime:
    return ORIGIN + ((moment - ORIGIN) // DAY) * DAY


def _name(start: datetime) -> str:
    return f"events_p{start.year:04d}{start.month:02d}{start.day:02d}"


def upgrade():
    bind = op.get_bind()
    op.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    op.execute("ALTER INDEX events_pkey RENAME TO events_unpartitioned_pkey")
    op.execute("ALTER INDEX ix_events_user_time RENAME TO ix_events_unpartitioned_user_time")
    op.execute("ALTER INDEX ix_events_time RENAME TO ix_events_unpartitioned_time")
    op.execute(_CREATE_EVENTS)

    holding = bind.execute(sa.text(
        "SELECT DISTINCT date_bin(:day, occurred_at, :origin) FROM events_unpartitioned"),
        {"day": DAY, "origin": ORIGIN}).scalars().all()
    today = _day(bind.execute(sa.text("SELECT now()")).scalar_one())
    days = sorted(set(holding) | {today + i * DAY for i in range(DAYS_AHEAD + 1)})
    for start in days:
        # DDL takes no parameters; the bounds are timestamps made here, not input
        op.execute(f'CREATE TABLE "{_name(start)}" PARTITION OF events '
                   f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + DAY).isoformat()}')")

    op.execute(f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM events_unpartitioned")
    op.execute("ALTER TABLE events ADD CONSTRAINT pk_events PRIMARY KEY (user_id, occurred_at, id)")
    op.execute("CREATE INDEX ix_events_time ON events (occurred_at, id)")
    # The list's other filters: `action` without a user, and `meta.KEY=VALUE` (JSONB containment).
    op.execute("CREATE INDEX ix_events_action_time ON events (action, occurred_at, id)")
    op.execute("CREATE INDEX ix_events_metadata ON events USING gin (metadata jsonb_path_ops)")

    op.execute("""
        CREATE TABLE event_keys (
            user_id bigint NOT NULL,
            id uuid NOT NULL,
            occurred_at timestamptz NOT NULL
        )""")
    # Which of the existing ids a client chose is not recorded, so all of them are kept.
    op.execute("INSERT INTO event_keys (user_id, id, occurred_at) SELECT user_id, id, occurred_at "
               "FROM events_unpartitioned")
    op.execute("ALTER TABLE event_keys ADD CONSTRAINT event_keys_pkey PRIMARY KEY (user_id, id)")
    op.execute("CREATE INDEX ix_event_keys_occurred ON event_keys (occurred_at)")
    op.execute("DROP TABLE events_unpartitioned")
    op.execute("ANALYZE events")
    op.execute("ANALYZE event_keys")


def downgrade():
    op.execute("ALTER TABLE events RENAME TO events_partitioned")
    op.execute("""
        CREATE TABLE events (
            id uuid NOT NULL,
            user_id bigint NOT NULL,
            action text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT events_pkey PRIMARY KEY (id),
            CONSTRAINT ck_events_user_id_positive CHECK (user_id > 0),
            CONSTRAINT ck_events_action_length CHECK (action <> '' AND length(action) <= 255),
            CONSTRAINT ck_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
        )""")
    # Ids are unique per user since 0003; where two users share one, the older event keeps it.
    op.execute(f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM events_partitioned "
               "ORDER BY occurred_at ON CONFLICT (id) DO NOTHING")
    op.execute("DROP TABLE events_partitioned")
    op.execute("DROP TABLE event_keys")
    op.execute("CREATE INDEX ix_events_user_time ON events (user_id, occurred_at, id)")
    op.execute("CREATE INDEX ix_events_time ON events (occurred_at, id)")
