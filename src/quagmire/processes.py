"""Process lifetime helpers shared by the grading workers (`quagmire.verify_pool`) and the warm-start server
(`quagmire.warm_start`). Standard library only: every rule's env imports it, the analysis env included."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux prctl option: signal this process when its parent dies


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send this process `signum` when the process that started it dies (best effort): a grading
    worker is killed; the warm-start server is asked to stop."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
