"""Every SQL statement the services (and the runtime's and Prometheus's checks) run, printed whole and prepared
against the migrated schema.

A statement is a module-level constant of one of those modules, a `str` or a
`sqlalchemy.text`, whose text starts with SQL. `pytest -s` on this file shows
each one whole, as psycopg is given it; PostgreSQL then parses, resolves and
plans it (`PREPARE`, inside a transaction rolled back, without running it), so
a statement that is malformed, names a column the schema lacks or mixes types
fails here.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from app.ops import prometheus
from app.runtime import replica
from app.services import calculation, events, metrics, partitions, retention

MODULES = (events, metrics, calculation, partitions, retention, replica, prometheus)
SQL_START = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
# psycopg's placeholders (named or positional, text or binary) and its escaped percent sign
PLACEHOLDER = re.compile(r"%%|%\((\w+)\)[sbt]|%[sbt]")

# The parameters whose type PostgreSQL cannot infer from the statement alone, typed as the services pass
# them (a window's size is a timedelta, which psycopg sends as an interval); every other one takes the type
# of the column or cast it meets.
PARAMETER_TYPES = {"size": "interval"}
DIALECT = psycopg_dialect.dialect()


def sql_text(value: object) -> str | None:
    """The text psycopg is given for a module-level value, if it is a statement."""
    if isinstance(value, sa.TextClause):
        text = str(value.compile(dialect=DIALECT))  # `:name` becomes `%(name)s`, a `%` becomes `%%`
    elif isinstance(value, str):
        text = value
    else:
        return None
    return text if SQL_START.match(text) else None


def statements() -> Iterator[tuple[str, str]]:
    """(module.NAME, its text) for each statement constant of the service modules."""
    for module in MODULES:
        for name, value in vars(module).items():
            text = sql_text(value)
            if text is not None:
                yield f"{module.__name__.rpartition('.')[2]}.{name}", text


def numbered(text: str) -> tuple[str, list[str]]:
    """The statement with psycopg's placeholders as PostgreSQL's `$n` (a name used twice keeps its number),
    and the name of each `$n` in order ("" for a positional one)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        placeholder, name = match.group(0), match.group(1)
        if placeholder == "%%":
            return "%"
        if name is None or name not in names:
            names.append(name or "")
            return f"${len(names)}"
        return f"${names.index(name) + 1}"

    return PLACEHOLDER.sub(number, text), names


def prepare(connection: psycopg.Connection[Any], name: str, text: str) -> None:
    """Have PostgreSQL parse, resolve and plan the statement, without running it."""
    sql, parameters = numbered(text)
    types = ", ".join(PARAMETER_TYPES.get(parameter, "unknown") for parameter in parameters)
    connection.execute(f"PREPARE {name}{f'({types})' if types else ''} AS {sql}")


@pytest.fixture
def connection(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the migrated test database whose every change is rolled back."""
    with psycopg.connect(database_url) as connection:
        yield connection
        connection.rollback()


ALL = list(statements())


@pytest.mark.parametrize(("name", "text"), ALL, ids=[name for name, _ in ALL])
def test_each_statement_is_valid_sql_on_the_migrated_schema(connection, name: str, text: str):
    print(f"\n-- {name}\n{text.strip()}\n")
    prepare(connection, "statement", text)


def test_every_service_module_has_its_statements_collected():
    found = {name for name, _ in ALL}
    assert {"events._INSERT_ONE", "events._INSERT_MANY", "events._INSERT_KEYED_OR_LATE", "events._SELECT_KEYED",
            "metrics._WINDOW_TOTALS", "metrics._OPEN_WINDOWS", "calculation._HOLD_RUN", "calculation._RELEASE_RUN",
            "partitions._PARTITIONS", "retention._DELETE_KEYS"} <= found


@pytest.mark.parametrize("value", [
    pytest.param("SELECT id FROM events WHERE", id="cut short"),
    pytest.param("SELECT id FROM events WHERE users = %(user_id)s", id="no such column"),
    pytest.param("INSERT INTO events (id, user_id) VALUES (%(id)s, %(user_id)s, %(action)s)", id="a value too many"),
    pytest.param("SELECT count(*) FROM events WHERE occurred_at > %(size)s", id="a time compared with an interval"),
    pytest.param(sa.text("SELECT window_start FROM metrics_windows WHERE window_end <= :closed ORDER"),
                 id="sqlalchemy text cut short"),
])
def test_a_malformed_statement_fails_the_check(connection, value: str | sa.TextClause):
    text = sql_text(value)
    assert text is not None
    with pytest.raises(psycopg.ProgrammingError) as refused:
        prepare(connection, "malformed", text)
    assert refused.value.sqlstate is not None and refused.value.sqlstate.startswith("42")  # syntax or names
