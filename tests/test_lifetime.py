"""Children that die with their parent, with real processes: the parent is SIGKILLed (no clean-up
runs) and its child must go too, instead of living on as an orphan holding ports and connections.

Each test forks a stand-in parent from the test process; the child it starts holds the write end
of a pipe as its stdout, so the test sees the child exit as end-of-file on the read end.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from app.runtime.lifecycle import die_with_parent, forks_die_with_their_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# How long a child may take to notice its parent's death: the kernel signals it at once.
DEATH_TIMEOUT = 2.0


def read_line(fd: int, timeout: float) -> bytes:
    """One line from the pipe, or b"" at end-of-file; fails the test when nothing comes in time."""
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"nothing within {timeout} s (read so far: {line!r})"
        chunk = os.read(fd, 1)
        if not chunk:
            return line
        line += chunk
    return line


def gone_pid() -> int:
    """The pid of a process that has exited: a parent that is no longer there."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def orphan_watch() -> Iterator[Callable[[Callable[[int], None]], tuple[bytes, int]]]:
    """Runs `start_child(write_fd)` in a forked stand-in parent, kills that parent with SIGKILL once the
    child has said it runs, and returns (what the child wrote, its pid) after the child is gone."""
    children: list[int] = []
    parents: list[int] = []

    def watch(start_child: Callable[[int], None]) -> tuple[bytes, int]:
        read_fd, write_fd = os.pipe()
        parent = os.fork()
        if parent == 0:  # the stand-in parent: never returns into pytest
            try:
                os.close(read_fd)
                start_child(write_fd)
                os.close(write_fd)
                signal.pause()
            finally:
                os._exit(1)
        parents.append(parent)
        os.close(write_fd)
        try:
            child = int(read_line(read_fd, DEATH_TIMEOUT))  # the child runs, past whatever it did at fork
            children.append(child)
            os.kill(parent, signal.SIGKILL)
            os.waitpid(parent, 0)
            parents.remove(parent)
            rest = b""
            while chunk := read_line(read_fd, DEATH_TIMEOUT):  # fails unless the child exits
                rest += chunk
            return rest, child
        finally:
            os.close(read_fd)

    yield watch
    for pid in children + parents:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in parents:
        os.waitpid(pid, 0)


def test_a_child_started_with_die_with_parent_dies_when_its_parent_is_killed(orphan_watch):
    def start_child(write_fd: int) -> None:
        subprocess.Popen(["sh", "-c", "echo $$; exec sleep 30"], stdout=write_fd,
                         preexec_fn=partial(die_with_parent, os.getpid()))  # noqa: PLW1509 (as app/dev/server.py)

    rest, _ = orphan_watch(start_child)
    assert rest == b""


def test_a_forked_child_dies_with_its_parent_and_gets_the_signal_asked_for(orphan_watch):
    def start_child(write_fd: int) -> None:
        forks_die_with_their_parent(signal.SIGTERM)
        forks_die_with_their_parent(signal.SIGKILL)  # once per process is enough: a second call changes nothing
        if os.fork() == 0:
            try:
                def report(signum: int, _frame: object) -> None:
                    os.write(write_fd, f"{signal.Signals(signum).name}\n".encode())
                    os._exit(0)

                signal.signal(signal.SIGTERM, report)
                os.write(write_fd, f"{os.getpid()}\n".encode())
                signal.pause()
            finally:
                os._exit(1)

    rest, _ = orphan_watch(start_child)
    assert rest == b"SIGTERM\n"


def returncode(preexec: Callable[[], None]) -> int:
    """How `true`, started with `preexec` run between fork and exec, ended (-N: killed by signal N)."""
    return subprocess.run(["true"], preexec_fn=preexec, check=False).returncode


def test_a_child_whose_parent_is_already_gone_goes_at_once_with_the_signal_asked_for():
    """The parent died between fork and the request: no death signal would ever come, so the child goes now."""
    gone = gone_pid()
    assert returncode(partial(die_with_parent, gone)) == -signal.SIGKILL
    assert returncode(partial(die_with_parent, gone, signal.SIGTERM)) == -signal.SIGTERM
    # while the parent is there, the child runs as usual
    assert returncode(partial(die_with_parent, os.getpid())) == 0


def test_a_signal_the_kernel_refuses_is_reported_with_its_reason():
    ctypes.set_errno(0)  # ctypes' saved errno, so an earlier failure in this thread cannot stand in for this one
    with pytest.raises(OSError) as refused:
        die_with_parent(os.getppid(), 12345)  # no such signal; and the parent is there, so nothing else happens
    assert refused.value.errno == errno.EINVAL
    assert str(refused.value) == f"[Errno {errno.EINVAL}] prctl(PR_SET_PDEATHSIG): {os.strerror(errno.EINVAL)}"


def test_elsewhere_than_linux_it_does_nothing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert returncode(partial(die_with_parent, gone_pid())) == 0
