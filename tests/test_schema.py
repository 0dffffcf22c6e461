"""The migrations build exactly the tables the code is written against (`app/core/tables.py`).

The partitions of `events` are left out: they are made at run time, and each
carries the parent's columns and indexes by construction.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.core.tables import metadata
from app.extensions import db


def test_a_migrated_database_matches_the_table_definitions(app):
    with app.app_context(), db.engine.connect() as connection:
        partitions = set(connection.execute(sa.text("SELECT relname FROM pg_class WHERE relispartition")).scalars())
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "compare_server_default": True,
            "include_name": lambda name, kind, _parents: not (kind == "table" and name in partitions)})
        differences = compare_metadata(context, metadata)
    assert differences == []
