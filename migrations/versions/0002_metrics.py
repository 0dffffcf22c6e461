"""user activity metrics, the windows ledger and calculation runs

Revision ID: 0002_metrics
Revises: 0001_events
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_metrics"
down_revision = "0001_events"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user_activity_metrics",
        sa.Column("user_id", sa.BigInteger(), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("actions", postgresql.JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("window_end > window_start", name="ck_metrics_window_order"),
    )
    op.create_index("ix_user_activity_metrics_window", "user_activity_metrics", ["window_start", "user_id"])

    op.create_table(
        "metrics_windows",
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True)),
        sa.Column("stale", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_metrics_windows_stale", "metrics_windows", ["window_start"],
                    postgresql_where=sa.text("stale"))

    op.create_table(
        "calculation_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("first_window", sa.DateTime(timezone=True)),
        sa.Column("last_window", sa.DateTime(timezone=True)),
        sa.Column("windows", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("users", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("events", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_calculation_runs_started", "calculation_runs", [sa.text("started_at DESC")])


def downgrade():
    op.drop_table("calculation_runs")
    op.drop_table("metrics_windows")
    op.drop_table("user_activity_metrics")
