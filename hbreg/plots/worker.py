"""A run's figures drawn in the background while the fit that needs them goes on.

Drawing the six figures of a radon fit takes about 0.9 s of CPU, and importing matplotlib
and xarray and loading the fonts another 0.75 s: drawn on one core after the fit, a third
of a warm `hbreg fit` on a 2-core machine. `PlotWorkers` starts one ``python -m
hbreg.plots.worker`` process when the fit starts, at a lower priority; it imports and warms
up while the fit builds, compiles and samples (one core's work). The fit sends the figures
as soon as their draws exist (pickled over a pipe, a few milliseconds), in shares of about
equal drawing time: the posterior figures right after sampling, the posterior predictive
check once its draws are made. The worker forks a child per share, so the shares are drawn
at once, each by a process that is already warm; without `os.fork` (Windows) it draws them
one after the other. Meanwhile the fit writes ``idata.nc`` and the summary, then waits.

The figures are exactly those `save_plots` draws in-process: each child calls it for its
kinds. An exception raised while drawing is sent back and raised in the fit, so an error
reads as it did before; a process that dies is reported with how it ended.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["PlotWorkers"]

# Drawing time of each kind in 1/20 s, measured on radon (85 groups, 5 population
# parameters) after the warm-up, to share the figures out evenly.
_COST = {"trace": 5.0, "pair": 4.5, "forest": 4.0, "posterior": 2.5, "ppc": 1.2, "energy": 1.0}
_NICENESS = 10
# The worker forks: no BLAS or OpenMP thread pools in it (figures need none).
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class PlotWorkers:
    """The background process drawing one run's figures (a context manager).

    The figures are split into two shares drawn at once on a machine with two cores or
    more (the fit itself needs one core once sampling is over), else drawn as one.
    Leaving the context stops the worker if it still runs (the fit failed or was
    interrupted), so no process outlives its run.
    """

    def __init__(self, kinds) -> None:
        self._loads = [0.0] * min(len(kinds), 2 if (os.cpu_count() or 1) >= 2 else 1)
        self._order: list[str] = []
        self._stderr = tempfile.TemporaryFile()  # a file: a chatty worker never blocks
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hbreg.plots.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **_SINGLE_THREADED},
            start_new_session=hasattr(os, "killpg"),  # its own group: see __exit__
        )
        self._queue: queue.Queue = queue.Queue()
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def __enter__(self) -> PlotWorkers:
        return self

    def __exit__(self, *exc) -> None:
        if self._process.poll() is None:  # the fit failed or was interrupted
            self._stop()
        self._queue.put(None)
        for stream in (self._process.stdout, self._stderr):
            stream.close()

    def _stop(self) -> None:
        """Kill the worker and the children drawing for it, before they write more."""
        if hasattr(os, "killpg"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        self._process.kill()
        self._process.wait()

    def draw(self, tree, out_dir: Path, *, kinds, **options) -> None:
        """`save_plots(tree, out_dir, kinds=..., **options)`, the kinds shared out.

        May be called again with other kinds (and the groups they need) as their draws
        become ready. Returns at once: a thread writes the data, so the fit goes on even
        while a loaded machine keeps the worker from reading yet.
        """
        kinds = [k for k in dict.fromkeys(kinds) if k not in self._order]
        self._order += kinds
        shares: list[list[str]] = [[] for _ in self._loads]
        for kind in sorted(kinds, key=lambda k: -_COST.get(k, 1.0)):
            least = self._loads.index(min(self._loads))
            shares[least].append(kind)
            self._loads[least] += _COST.get(kind, 1.0)
        for share in filter(None, shares):
            share = [k for k in kinds if k in share]  # in the order asked for
            job = (tree, Path(out_dir), {**options, "kinds": share})
            self._queue.put(pickle.dumps(job, protocol=5))

    def save(self, make, *args, path: Path, **kwargs) -> None:
        """`plots.common.save(make(*args, **kwargs), path)` in a child of its own.

        For any command's figure; `make` is a module-level function (sent by name).
        """
        self._order.append(Path(path).stem)
        self._queue.put(pickle.dumps((make, args, kwargs, Path(path)), protocol=5))

    def wait(self) -> list[Path]:
        """The files written, in the order asked for.

        Raises what `save_plots` raised, or why the worker died. With nothing sent the
        worker ends at once and nothing is written.
        """
        self._queue.put(None)
        self._feeder.join()
        out = self._process.stdout.read()
        self._process.wait()
        if not out and self._process.returncode == 0:
            return []  # nothing was sent
        try:
            status, value = pickle.loads(out)
        except Exception:  # noqa: BLE001 - nothing readable came back: the worker died
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError(_died(self._process.returncode, lines)) from None
        if status == "error":
            raise value
        return sorted(value, key=lambda path: self._order.index(path.stem))

    def _feed(self) -> None:
        stdin = self._process.stdin
        try:
            while (payload := self._queue.get()) is not None:
                stdin.write(payload)
                stdin.flush()
        except OSError:
            pass  # the worker died: `wait` reports why
        finally:
            try:
                stdin.close()
            except OSError:
                pass


def _died(code: int | None, lines: list[str] = ()) -> str:
    """Why a drawing process ended without an answer."""
    if lines:
        reason = lines[-1]
    elif code is not None and code < 0:
        reason = f"killed by signal {-code}"
    else:
        reason = f"exit code {code}"
    return f"the process drawing the plots failed: {reason}"


# ----------------------------------------------------------------------------- the worker


def _serve() -> None:
    """Warm up, then draw each job arriving on stdin; answer once, when stdin ends.

    The worker runs at a lower priority: while it imports, the fit builds and compiles on
    the same cores, and the fit's own work comes first.
    """
    if hasattr(os, "nice"):
        os.nice(_NICENESS)
    import xarray  # noqa: F401 - the figures' data arrive as an xarray DataTree

    from hbreg._imports import xarray_without_dask
    from hbreg.plots import common, fit  # noqa: F401 - imported once, before any fork

    xarray_without_dask()  # else the first xarray operation imports Dask: 0.3 s of a figure

    common.warm_up()
    shares = []
    while True:
        try:
            job = pickle.load(sys.stdin.buffer)
        except EOFError:
            break
        shares.append(_Share(job))
    written, failure = [], None
    for share in shares:
        status, value = share.answer()
        if status == "error":
            failure = failure or value
        else:
            written += value
    answer = ("error", failure) if failure is not None else ("ok", written)
    if shares:
        sys.stdout.buffer.write(_pickled(answer))
    sys.stdout.buffer.flush()
    os._exit(0)  # the figures are written and closed: skip tearing matplotlib down


class _Share:
    """One share of the figures: drawn by a forked child where there is `os.fork`."""

    def __init__(self, job) -> None:
        self._pid = None
        if not hasattr(os, "fork"):
            self._answer = _draw(job)
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: draw, answer through the pipe, leave at once
            os.close(read)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(_pickled(_draw(job)))
            os._exit(0)
        os.close(write)
        self._pid, self._read = pid, read

    def answer(self) -> tuple[str, object]:
        if self._pid is None:
            return self._answer
        with os.fdopen(self._read, "rb") as pipe:
            out = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        try:
            return pickle.loads(out)
        except Exception:  # noqa: BLE001 - the child died before answering
            return "error", RuntimeError(_died(os.waitstatus_to_exitcode(status)))


def _draw(job) -> tuple[str, object]:
    """A fit's figures (tree, out_dir, options) or one figure (make, args, kwargs, path)."""
    from hbreg.plots.common import save
    from hbreg.plots.fit import save_plots

    try:
        if len(job) == 4:
            make, args, kwargs, path = job
            return "ok", [save(make(*args, **kwargs), path)]
        tree, out_dir, options = job
        return "ok", save_plots(tree, out_dir, **options)
    except Exception as exc:  # noqa: BLE001 - sent back and raised by the caller
        return "error", exc


def _pickled(answer: tuple[str, object]) -> bytes:
    try:
        return pickle.dumps(answer)
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        value = answer[1]
        return pickle.dumps(("error", RuntimeError(f"{type(value).__name__}: {value}")))


if __name__ == "__main__":
    _serve()
