"""How a process's runtimes live and die: one rule after a fork, one at exit, and children that die with their parent.

The one fork hook of the service is here. In a forked child, every live
`Runtime` forgets what its parent made (connections, threads, queues: they
are the parent's) and makes its own on first use; RQ's work horse, its
scheduler process and any other fork of a process that built the app get a
runtime of their own that way. At a normal exit each runtime hands its last
queued observations over (`Runtime.at_exit`).

A child in a process group of its own (the dev server's children, so that
Ctrl-C reaches only the launcher; RQ's work horse, which RQ puts in its own
group, and its scheduler process) outlives a parent killed outright: SIGKILL
runs no clean-up. Linux can signal a child when its parent exits
(`prctl(PR_SET_PDEATHSIG)`); elsewhere this does nothing. The request
survives `exec`, so it can be made between fork and exec
(`subprocess.Popen(preexec_fn=...)`), or in every child a process forks
(`forks_die_with_their_parent`).
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys
import weakref
from typing import Protocol

PR_SET_PDEATHSIG = 1


class ForkAware(Protocol):
    """What the hooks below call on each live runtime."""

    def after_fork(self) -> None: ...

    def at_exit(self) -> None: ...


_live: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_installed = [False]
_forking_pid = [0]  # the pid of the process that is forking, as the child's copy of memory holds it
_death_signal: list[int | None] = [None]  # what every forked child gets when its parent exits, once asked for


def track(runtime: ForkAware) -> None:
    """Follow `runtime` through forks and to the process's exit, for as long as it lives."""
    _install()
    _live.add(runtime)


def forks_die_with_their_parent(sig: int = signal.SIGKILL) -> None:
    """From now on, every process forked from this one (and from those) gets `sig` when its parent exits.

    For children made by libraries that offer no hook of their own, such as
    RQ's work horse and its scheduler process. The first call decides the signal.
    """
    _install()
    if _death_signal[0] is None:
        _death_signal[0] = int(sig)


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have this process receive `sig` when its parent `parent` exits (call it in the child, right after fork).

    `parent` is the pid the parent had before forking: if it has already
    exited by the time the request is made, this process goes at once.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def _install() -> None:
    if _installed[0]:
        return
    _installed[0] = True
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    atexit.register(_at_exit)


def _before_fork() -> None:
    _forking_pid[0] = os.getpid()


def _after_fork_in_child() -> None:
    try:
        for runtime in list(_live):
            runtime.after_fork()
    finally:  # whatever happened above, the child still dies with its parent
        if _death_signal[0] is not None:
            die_with_parent(_forking_pid[0], _death_signal[0])


def _at_exit() -> None:
    for runtime in list(_live):
        runtime.at_exit()
