"""Processes that die with their parent, however the parent dies.

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

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


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


_forking_pid = [0]  # the pid of the process that is forking, as the child's copy of memory holds it
_hooked = [False]


def forks_die_with_their_parent(sig: int = signal.SIGKILL) -> None:
    """From now on, every process forked from this one (and from those) gets `sig` when its parent exits.

    For children made by libraries that offer no hook of their own, such as
    RQ's work horse and its scheduler process. Once per process is enough.
    """
    if _hooked[0]:
        return
    _hooked[0] = True
    os.register_at_fork(before=lambda: _forking_pid.__setitem__(0, os.getpid()),
                        after_in_child=lambda: die_with_parent(_forking_pid[0], sig))
