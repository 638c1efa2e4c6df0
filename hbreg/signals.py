"""Ctrl-C and SIGTERM, remembered as well as raised.

The samplers (nutpie and PyMC) catch `KeyboardInterrupt` and return the draws made so
far as if sampling had ended, so a run directory asks `interrupted()` before it calls
itself complete. `uninterruptible()` guards the few lines that finish or mark a run.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "Interrupted",
    "handle_sigterm",
    "interrupted",
    "last_abandoned",
    "note_abandoned",
    "uninterruptible",
]

# signal: the first SIGINT/SIGTERM received since handle_sigterm(); critical: depth of
# sections (final manifest + rename) a signal must not cut in half; abandoned: the last
# run directory marked failed/interrupted, for the CLI's message.
_signals: dict = {"signal": None, "critical": 0, "abandoned": None}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived while a run was being made (exit code 130).

    A KeyboardInterrupt, not an HbregError, so that code catching `Exception` (a
    simulation recording one failed replicate and going on) lets it through.
    """

    exit_code = 130


def handle_sigterm() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt and remember that one arrived.

    Called at the start of a command; it forgets signals from an earlier command in
    the same process. SIGINT is left alone when it is ignored (a background job of a
    non-interactive shell), as the shell intends. Does nothing outside the main thread.
    """
    _signals.update(signal=None, critical=0, abandoned=None)
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)


def _on_signal(signum, frame):
    _signals["signal"] = signum
    if _signals["critical"]:
        return  # the run is being finished or marked; the command ends right after
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupted() -> str | None:
    """The name of the signal (SIGINT, SIGTERM) received since `handle_sigterm`, if any."""
    signum = _signals["signal"]
    return None if signum is None else signal.Signals(signum).name


def last_abandoned() -> Path | None:
    """The run directory most recently marked failed or interrupted by this command."""
    return _signals["abandoned"]


@contextmanager
def uninterruptible():
    """A section (final manifest and rename) that a signal must not cut in half."""
    _signals["critical"] += 1
    try:
        yield
    finally:
        _signals["critical"] -= 1


def note_abandoned(path: Path) -> None:
    """Remember the run directory just marked failed or interrupted, for the CLI's message."""
    _signals["abandoned"] = path
