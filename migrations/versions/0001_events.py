"""events table with its time-range indexes

Revision ID: 0001_events
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_events"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("user_id > 0", name="ck_events_user_id_positive"),
        sa.CheckConstraint("action <> '' AND length(action) <= 255", name="ck_events_action_length"),
        sa.CheckConstraint("jsonb_typeof(metadata) = 'object'", name="ck_events_metadata_object"),
    )
    op.create_index("ix_events_user_time", "events", ["user_id", "occurred_at", "id"])
    op.create_index("ix_events_time", "events", ["occurred_at", "id"])


def downgrade():
    op.drop_table("events")
