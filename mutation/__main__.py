"""`make mutate`: mutation testing of the core, the services and the security checks, with mutmut 3.

mutmut copies the tree into `mutants/`, rewrites every function of the
modules named in `[tool.mutmut]` (pyproject.toml) into its mutants, runs the
test selection once to learn which tests reach which function, then runs
each mutant against the tests that reach its function, two at a time. The
tests use real PostgreSQL and Redis as always: each mutant's pytest session
uses a database and Redis namespace of its own.

Functions that every request passes through are reached by nearly every
test; their mutants run only the test files about them (see
`mutation/narrowed.py`), which keeps a run under half an hour on two cores.

Without DATABASE_URL / REDIS_URL it starts embedded servers for the run, as
`make test` does. Each mutant's pytest session borrows one of a few migrated
databases made for the run (TRACKING_TEST_DATABASES, see tests/conftest.py)
instead of creating, migrating and dropping one: that was a second a mutant.
It starts from a clean `mutants/` every time, then writes tests/MUTATION.md
(see `mutation/report.py`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def servers() -> Iterator[None]:
    """PostgreSQL and Redis for the run: the ones the environment names, or embedded ones."""
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tracking-mutate-")))
        if not os.environ.get("DATABASE_URL"):
            from app.dev.embedded import start_postgres
            postgres = start_postgres(scratch / "postgres")
            stack.callback(postgres.stop)
            os.environ["DATABASE_URL"] = postgres.url
        if not os.environ.get("REDIS_URL"):
            from app.dev.embedded import start_redis
            redis = start_redis(scratch / "redis")
            stack.callback(redis.stop)
            os.environ["REDIS_URL"] = redis.url
        yield


@contextmanager
def lent_databases(count: int) -> Iterator[list[str]]:
    """`count` migrated databases of our own for the test sessions to borrow, dropped at the end."""
    from flask_migrate import upgrade

    from app import create_app, extensions
    from app.dev.fixtures import throwaway_database

    with ExitStack() as stack:
        urls = [stack.enter_context(throwaway_database(os.environ["DATABASE_URL"], "tracking_mutate"))
                for _ in range(count)]
        for url in urls:
            app = create_app({"DATABASE_URL": url})
            with app.app_context():
                upgrade()
            extensions.close(app)
        yield urls


def run_mutmut(max_children: int, databases: list[str]) -> None:
    """mutmut in a process of its own: this one has imported `app` unmutated, which the mutants must not see."""
    command = [sys.executable, "-m", "mutation.narrowed", "--max-children", str(max_children)]
    env = {**os.environ, "TRACKING_TEST_DATABASES": ",".join(databases)}
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: one per core)")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite tests/MUTATION.md from the results already in mutants/")
    args = parser.parse_args()
    os.chdir(ROOT)
    from mutation.report import write_report

    began = time.monotonic()
    if not args.report_only:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        # each mutant is a short pytest session: lend it a migrated database rather than have it make one
        with servers(), lent_databases(2 * args.max_children) as databases:
            run_mutmut(args.max_children, databases)
    minutes = (time.monotonic() - began) / 60 if not args.report_only else None
    summary = write_report(ROOT / "tests" / "MUTATION.md", minutes=minutes)
    print(summary)


if __name__ == "__main__":
    sys.exit(main())
