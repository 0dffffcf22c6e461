"""Alembic environment: runs migrations on the Flask app's primary engine."""
import logging
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from flask import current_app

config = context.config
# create_app() has set up structured logging (app/core/logs.py); alembic.ini's logging would replace it.
if not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db
target_metadata = target_db.metadatas[None]


def run_migrations_offline():
    """Emit SQL to stdout (`flask db upgrade --sql`) without a connection."""
    url = target_db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def partitions_left_out(connection):
    """An `include_name` hook that hides partitions: they are made at run time, not declared in tables.py.

    Only autogenerate calls it; the catalogue is read then, not before an upgrade's transaction begins.
    """
    partitions = []

    def include_name(name, type_, parent_names):
        if type_ != "table":
            return True
        if not partitions:
            partitions.append(set(connection.execute(
                sa.text("SELECT relname FROM pg_class WHERE relispartition")).scalars()))
        return name not in partitions[0]

    return include_name


def run_migrations_online():
    def skip_empty_autogenerate(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    with target_db.engine.connect() as connection:
        conf_args.setdefault("include_name", partitions_left_out(connection))
        context.configure(connection=connection, target_metadata=target_metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
