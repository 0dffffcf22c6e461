"""A py-spy profile of one web worker under load, summarised for RESULTS.md.

py-spy samples the worker from outside (no code in the app), keeping only
samples of threads that hold the GIL, i.e. where the worker spends its CPU.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy executable of this venv (the `bench` extra installs it), or one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(executable: str, pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([executable, "record", "--pid", str(pid), "--duration", str(round(seconds)),
                             "--rate", "200", "--gil", "--format", "raw", "--output", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    """`create_event (app/api/events.py:20)` -> `create_event (app/api/events.py)`."""
    function, _, location = frame.partition(" (")
    path = location.rsplit(":", 1)[0].rstrip(")")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/app/" in path:
        path = "app/" + path.rsplit("/app/", 1)[1]
    else:
        path = Path(path).name
    return f"{function} ({path})"


def summarize(raw: Path, *, top: int = 30) -> str:
    """The share of in-request samples spent in each function (inclusive) and on its own lines (self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        entry = next((i for i, frame in enumerate(frames) if frame.startswith("Flask.wsgi_app ")), None)
        if entry is None:
            continue
        frames = frames[entry:]
        samples = int(count)
        total += samples
        for name in {_frame_name(frame) for frame in frames}:
            inclusive[name] += samples
        own[_frame_name(frames[-1])] += samples
    if not total:
        return "py-spy recorded no samples inside a request."
    lines = [f"{total} samples inside requests; share of them per function, inclusive of callees:", ""]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "Self time (the function's own lines):", ""]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(lines)
