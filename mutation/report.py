"""tests/MUTATION.md from mutmut's results in `mutants/`: the score, the survivors by file, the equivalents.

A mutant is caught when a test failed (killed) or ran out of time (timeout:
the mutant loops). Equivalent mutants (`EQUIVALENT` in mutation/equivalent.py)
change nothing a caller can observe; they are listed with their reason and
left out of the score. Every other mutant counts, including those no test
reaches.
"""
from __future__ import annotations

import json
import os
from fnmatch import fnmatchcase
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from mutation.equivalent import EQUIVALENT

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.85
# The packages the target is about, and the security checks and the runtime reported beside them.
GROUPS = {"core and services": ("app/core/", "app/services/"), "security checks (app/http)": ("app/http/",),
          "runtime (app/runtime)": ("app/runtime/",)}
CAUGHT = {"killed", "timeout"}


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    status: str


def load_mutants() -> list[Mutant]:
    """Every mutant of the last run with its status, in file order."""
    from mutmut.stats import status_by_exit_code

    mutants = []
    for meta in sorted((ROOT / "mutants" / "app").rglob("*.py.meta")):
        path = str(meta.relative_to(ROOT / "mutants"))[: -len(".meta")]
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            mutants.append(Mutant(name, path, status_by_exit_code[exit_code]))
    return mutants


def _change(name: str, path: str) -> str:
    """The mutated lines, `old` → `new`, as one short line of Markdown."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=path).splitlines()[3:]
    removed = " ".join(line[1:].strip() for line in diff if line.startswith("-"))
    added = " ".join(line[1:].strip() for line in diff if line.startswith("+"))
    return f"`{_short(removed)}` → `{_short(added)}`"


def _short(text: str, limit: int = 110) -> str:
    text = text.replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def equivalent(name: str) -> str | None:
    """Why the mutant is equivalent, if mutation/equivalent.py says it is (by name or pattern)."""
    return next((reason for key, reason in EQUIVALENT.items() if fnmatchcase(name, key)), None)


def _score(mutants: list[Mutant]) -> tuple[int, int, float]:
    counted = [m for m in mutants if equivalent(m.name) is None]
    caught = sum(1 for m in counted if m.status in CAUGHT)
    return caught, len(counted), caught / len(counted) if counted else 0.0


def write_report(target: Path, *, minutes: float | None) -> str:
    """Write the report and return its one-line summary."""
    previous = os.getcwd()
    os.chdir(ROOT)  # mutmut reads its configuration and mutants/ from here
    try:
        mutants = load_mutants()
        survivors = [m for m in mutants if m.status not in CAUGHT and equivalent(m.name) is None]
        changes = {m.name: _change(m.name, m.path) for m in survivors}
        equivalents = [m for m in mutants if equivalent(m.name) is not None]
        changes.update({m.name: _change(m.name, m.path) for m in equivalents})
    finally:
        os.chdir(previous)

    lines = ["# Mutation testing", "",
             f"Written by `make mutate` on {datetime.now(timezone.utc):%Y-%m-%d} (mutmut {version('mutmut')}"
             + (f", {minutes:.0f} minutes on {os.cpu_count()} cores" if minutes is not None else "") + "). "
             "Each mutant is one small change to one function (a flipped comparison, a changed constant, "
             "a dropped argument); it is *caught* when some test fails (or hangs) with it in place. "
             f"The target is {TARGET:.0%} caught in the core and service packages; equivalent mutants, which "
             "no caller could tell apart from the original, are listed at the end and left out.", "",
             "| Packages | Mutants | Caught | Survived | Equivalent | Score |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    summary = ""
    for title, prefixes in GROUPS.items():
        group = [m for m in mutants if m.path.startswith(prefixes)]
        caught, counted, score = _score(group)
        lines.append(f"| {title} | {len(group)} | {caught} | {counted - caught} | {len(group) - counted} | {score:.1%} |")
        summary = summary or f"mutation score (core and services): {score:.1%} of {counted} mutants caught"
    statuses = Counter(m.status for m in mutants)
    lines += ["", "Status of every mutant: " + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())) + ".",
              "", "How it runs: every function of `app/core/`, `app/services/`, `app/http/auth.py`, "
              "`app/http/rate_limits.py`, `app/http/policy.py`, `app/http/csrf.py` and `app/runtime/` is mutated, "
              "except what mutmut 3 leaves alone (decorated functions: the `Database` context managers and the "
              "runtime's members). Each mutant runs the tests of the "
              "`[tool.mutmut]` selection that reach its function, without the tests that start worker or server "
              "processes; functions nearly every test reaches run only their own modules' test files "
              "(`mutation/narrowed.py`), which can only lower the score.",
              "", "## Surviving mutants, by file", "",
              "Each is a change no test noticed: a missing test, or a candidate for the equivalent list.", ""]
    by_file: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in survivors:
        by_file[mutant.path].append(mutant)
    for path, group in by_file.items():
        lines += [f"### `{path}` ({len(group)})", ""]
        lines += [f"- `{m.name.rsplit('.', 1)[1]}` ({m.status}): {changes[m.name]}" for m in group]
        lines.append("")
    if not by_file:
        lines += ["None.", ""]
    lines += ["## Equivalent mutants (left out of the score)", ""]
    lines += [f"- `{m.name.rsplit('.', 1)[1]}` ({m.path}, {m.status}): {equivalent(m.name)}. {changes[m.name]}"
              for m in equivalents]
    stale = [key for key in EQUIVALENT if not any(fnmatchcase(m.name, key) for m in mutants)]
    if stale:
        lines += ["", "Listed as equivalent but no longer generated (the code changed; review mutation/equivalent.py): "
                  + ", ".join(f"`{name}`" for name in stale) + "."]
    target.write_text("\n".join(lines).rstrip() + "\n")
    return summary
