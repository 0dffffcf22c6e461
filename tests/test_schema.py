"""The migrations build exactly the tables the code is written against (`app/core/tables.py`)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.core.tables import metadata
from app.extensions import db


def test_a_migrated_database_matches_the_table_definitions(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                               "compare_server_default": True})
        differences = compare_metadata(context, metadata)
    assert differences == []
