"""A run's figures drawn by background processes while the fit that needs them goes on.

Drawing the six figures of a radon fit takes about 1.2 s of CPU, and importing matplotlib
and loading its fonts another 0.5 s: a third of a warm `hbreg fit` on a 2-core machine,
all of it on one core. `PlotWorkers` starts ``python -m hbreg.plots.worker`` processes when
the fit starts; they import matplotlib and warm its font caches while the fit builds,
compiles and samples (one core's work). The fit sends each its share of the figures as
soon as their draws exist (pickled over a pipe, a few milliseconds): the posterior figures
right after sampling, the posterior predictive check once its draws are made. Meanwhile
it writes ``idata.nc`` and the summary, then waits for the figures.

The figures are exactly those `save_plots` draws in-process: each worker calls it for its
kinds. An exception raised while drawing is sent back and raised in the fit, so an error
reads as it did before; a worker that dies is reported with its last line.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["PlotWorkers"]

# Drawing time of each kind in 1/20 s, measured on radon (85 groups, 5 population
# parameters) after the warm-up, to share the figures out evenly.
_COST = {"trace": 5.0, "pair": 4.5, "forest": 4.5, "posterior": 2.5, "ppc": 1.2, "energy": 1.0}
_NICENESS = 10


class PlotWorkers:
    """Background processes drawing one run's figures (a context manager).

    Two on a machine with two cores or more (the fit itself needs one core once sampling
    is over), else one. Leaving the context stops any still running (the fit failed or
    was interrupted), so no process outlives its run.
    """

    def __init__(self, kinds) -> None:
        count = min(len(kinds), 2 if (os.cpu_count() or 1) >= 2 else 1)
        self._workers = [_Worker() for _ in range(count)]
        self._order: list[str] = []

    def __enter__(self) -> PlotWorkers:
        return self

    def __exit__(self, *exc) -> None:
        for worker in self._workers:
            worker.stop()

    def draw(self, tree, out_dir: Path, *, kinds, **options) -> None:
        """`save_plots(tree, out_dir, kinds=..., **options)`, the kinds shared out.

        May be called again with other kinds (and the groups they need) as their draws
        become ready. Returns at once: threads write the data, so the fit goes on even
        while a loaded machine keeps a worker from reading yet.
        """
        kinds = [k for k in dict.fromkeys(kinds) if k not in self._order]
        self._order += kinds
        shares: list[list[str]] = [[] for _ in self._workers]
        for kind in sorted(kinds, key=lambda k: -_COST.get(k, 1.0)):
            least = min(range(len(self._workers)), key=lambda i: self._workers[i].load)
            shares[least].append(kind)
            self._workers[least].load += _COST.get(kind, 1.0)
        for worker, share in zip(self._workers, shares, strict=True):
            if share:
                share = [k for k in kinds if k in share]  # in the order asked for
                worker.send((tree, Path(out_dir), {**options, "kinds": share}))

    def wait(self) -> list[Path]:
        """The files written, in the order asked for.

        Raises what `save_plots` raised, or why a worker died. A worker sent nothing ends
        at once and writes nothing.
        """
        written, failure = [], None
        for worker in self._workers:
            try:
                written += worker.result()
            except Exception as exc:  # noqa: BLE001 - the first failure is raised below
                failure = failure or exc
        if failure is not None:
            raise failure
        return sorted(written, key=lambda path: self._order.index(path.stem))


class _Worker:
    """One ``python -m hbreg.plots.worker`` process and the thread that feeds it."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # a file: a chatty worker never blocks
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hbreg.plots.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._queue: queue.Queue = queue.Queue()
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        self.load = 0.0

    def send(self, job) -> None:
        self._queue.put(pickle.dumps(job, protocol=5))

    def _feed(self) -> None:
        stdin = self._process.stdin
        try:
            while (payload := self._queue.get()) is not None:
                stdin.write(payload)
                stdin.flush()
        except OSError:
            pass  # the worker died: `result` reports why
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def result(self) -> list[Path]:
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
            reason = lines[-1] if lines else f"exit code {self._process.returncode}"
            raise RuntimeError(f"the process drawing the plots failed: {reason}") from None
        if status == "error":
            raise value
        return value

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._queue.put(None)
        for stream in (self._process.stdout, self._stderr):
            stream.close()


def _serve() -> None:
    """Warm matplotlib up, then draw each job arriving on stdin; answer once, at its end.

    The worker runs at a lower priority: while it imports, the fit builds and compiles on
    the same cores, and the fit's own work comes first (radon, 2 cores: 3.2 s for the whole
    fit instead of 3.5 s at equal priority).
    """
    if hasattr(os, "nice"):
        os.nice(_NICENESS)
    from hbreg.plots import common
    from hbreg.plots.fit import save_plots

    common.warm_up()
    written, answer = [], None
    while answer is None:
        try:
            tree, out_dir, options = pickle.load(sys.stdin.buffer)
        except EOFError:
            answer = ("ok", written)
            break
        try:
            written += save_plots(tree, out_dir, **options)
        except Exception as exc:  # noqa: BLE001 - sent back and raised by the fit
            answer = ("error", exc)
    try:
        reply = pickle.dumps(answer)
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        reply = pickle.dumps(("error", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}")))
    if written or answer[0] == "error":
        sys.stdout.buffer.write(reply)
    sys.stdout.buffer.flush()
    os._exit(0)  # the figures are written and closed: skip tearing matplotlib down


if __name__ == "__main__":
    _serve()
