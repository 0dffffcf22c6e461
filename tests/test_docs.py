"""Every command shown in README.md and docs/ runs, as written, against the service `make run` starts.

Each ```bash block of a document is a script, and each ```python block a
program (run by the suite's interpreter, where the client package is
installed): the blocks of one document run in order in one bash session (a
variable set in one is there in the next),
against the launcher of `make run` (web server, worker, scheduler) on this
test's database, with `127.0.0.1:8080` pointed at its port. curl fails on an
HTTP error unless the document says the block `answers with an error`; an
`expect:` comment after a block is a regular expression its output must
match. A block that cannot run here says why in a `not run:` comment naming
the test or file that covers it. Dates in the commands are computed when they
run, so no example can age out of the service's bounds.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import answers_healthz, free_port, stop, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_ADDRESS = "127.0.0.1:8080"
CORS_ORIGIN = "http://localhost:3000"  # the origin docs/api.md starts `make run` with

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!-- not run: (?P<why>.+) -->$")
_EXPECT = re.compile(r"^<!-- expect: (?P<pattern>.+) -->$")
_ERRORS = "<!-- answers with an error -->"
_FIXED_DATE = re.compile(r"\b(19|20)\d\d-\d\d-\d\d")
_PATH = re.compile(r"(?:tests|docs|bench|app|deploy)/[\w./-]+\.\w+|\.ci/run")


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    language: str
    code: str
    not_run: str | None
    expect: str | None
    errors_shown: bool

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of `document`, with the comments around them."""
    lines = document.read_text().splitlines()
    found = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        while not lines[index].startswith("```"):
            index += 1
        before = [line for line in lines[max(0, start - 2):start] if line.strip()]
        after = next((line for line in lines[index + 1:index + 3] if line.strip()), "")
        not_run = next((m["why"] for line in before if (m := _NOT_RUN.match(line))), None)
        expect = m["pattern"] if (m := _EXPECT.match(after)) else None
        found.append(Block(document, start + 1, fence[1], "\n".join(lines[start + 1:index]), not_run, expect,
                           _ERRORS in before))
        index += 1
    return found


ALL_BLOCKS = [block for document in DOCUMENTS for block in blocks(document)]
RUNNABLE = [block for block in ALL_BLOCKS if block.language in ("bash", "python") and block.not_run is None]


def test_every_command_is_in_a_bash_block_that_runs_or_says_what_covers_it():
    assert RUNNABLE, "no runnable block found: the parser lost them"
    for block in ALL_BLOCKS:
        assert block.language, f"{block.where}: a block without a language (commands go in ```bash)"
        assert block.language not in ("sh", "shell", "console") or block.not_run, block.where
        if block.not_run is not None:
            named = _PATH.findall(block.not_run)
            assert named, f"{block.where}: `not run:` must name the test or file that covers it"
            missing = [path for path in named if not (ROOT / path).exists()]
            assert not missing, f"{block.where}: names {missing}, which do not exist"


def test_no_command_carries_a_fixed_date():
    """A fixed date ages out of the service's bounds (EVENT_MAX_AGE_DAYS) and its examples rot."""
    dated = [f"{block.where}: {match.group(0)}" for block in RUNNABLE for match in _FIXED_DATE.finditer(block.code)]
    assert not dated, dated


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 300, len(readme)
    headings = [index for index, line in enumerate(readme) if line.startswith("## ")]
    architecture = next(index for index in headings if readme[index] == "## Architecture")
    assert architecture < len(readme) / 2
    for document in DOCUMENTS[1:]:
        assert f"(docs/{document.name})" in "\n".join(readme), f"the README does not link {document.name}"


@pytest.fixture
def service(app, app_config: dict[str, object], tmp_path: Path) -> Iterator[dict[str, str]]:
    """`make run`'s launcher on this test's servers, and the environment a reader's shell would have."""
    port = free_port()
    run_env = tmp_path / "run.env"
    environment = {**os.environ, **{key: str(value) for key, value in app_config.items() if key != "TESTING"},
                   "PORT": str(port), "RUN_ENV": str(run_env), "CORS_ALLOWED_ORIGINS": CORS_ORIGIN,
                   "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "launcher.log"
    with log_path.open("w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "app.dev.server"], cwd=ROOT, env=environment,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: answers_healthz(port) and run_env.exists(), timeout=60, what="make run's launcher serves")
        yield {**environment, "PORT": str(port)}
    finally:
        stop(launcher, log_path)


def _script(document_blocks: list[Block], port: int, python: str) -> str:
    """The document's blocks as one bash script, pointed at the test's service: a reader's shell, stricter
    (a failing command or an unset variable stops it, and the trap names the block)."""
    lines = [
        "set -eu",
        'trap \'echo "@@failed $BLOCK ($?)@@"\' ERR',
        f'make() {{ command make -C "{ROOT}" -o .venv/.installed-stamp PY="{python}" "$@"; }}',
        'curl() { if [ "$ERRORS_SHOWN" = 1 ]; then command curl "$@"; else command curl --fail-with-body "$@"; fi; }',
    ]
    for number, block in enumerate(document_blocks):
        code = block.code.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{port}")
        if block.language == "python":
            code = f'"{python}" - <<\'PYTHON_BLOCK\'\n{code}\nPYTHON_BLOCK'
        lines += [f"BLOCK={number} ERRORS_SHOWN={int(block.errors_shown)}", f"echo '@@block {number}@@'", code]
    return "\n".join(lines) + "\n"


@pytest.mark.seconds
@pytest.mark.parametrize("document", [doc for doc in DOCUMENTS if any(b.document == doc for b in RUNNABLE)],
                         ids=lambda doc: doc.name)
def test_the_commands_of_each_document_run_as_written(service, document: Path, tmp_path: Path):
    document_blocks = [block for block in RUNNABLE if block.document == document]
    script = _script(document_blocks, int(service["PORT"]), sys.executable)
    reader_shell = {key: value for key, value in service.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    completed = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=reader_shell, capture_output=True,
                               text=True, timeout=300)
    outputs = re.split(r"^@@block \d+@@\n", completed.stdout, flags=re.M)[1:]
    for block, output in zip(document_blocks, outputs):
        failed = re.search(r"^@@failed \d+ \((\d+)\)@@$", output, flags=re.M)
        assert failed is None, f"{block.where} exited {failed[1] if failed else ''}:\n{output}\n{completed.stderr}"
        if block.expect is not None:
            assert re.search(block.expect, output, flags=re.M | re.S), f"{block.where}: no /{block.expect}/ in\n{output}"
    assert completed.returncode == 0 and len(outputs) == len(document_blocks), completed.stdout + completed.stderr
