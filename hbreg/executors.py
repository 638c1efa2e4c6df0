"""Where independent jobs run: in-process, on a local process pool, or on a Dask cluster.

`hbreg simulate`'s replicates and `hbreg compare --kfold`'s refits are the same shape of
work: picklable tasks, one top-level function, results used as they complete. Both run
here, so the process-pool start method, interrupt handling and the Dask client live once.
A result never depends on the executor that computed it (each task carries its seed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hbreg.errors import ConfigError

__all__ = ["EXECUTORS", "connect", "dask_map", "local_map", "one_line"]

EXECUTORS = ("local", "dask")

Lost = Callable[[Any, BaseException], Any] | None


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line, for manifests and terminal lines."""
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def connect(executor: str, scheduler: str | None):
    """Check the executor choice; return a Dask client for ``dask``, None for ``local``.

    Raises ConfigError (exit 2) for an unknown executor, a scheduler without Dask, Dask not
    installed, or a scheduler that cannot be reached, before anything is written.
    """
    if executor not in EXECUTORS:
        raise ConfigError(
            f"--executor: '{executor}' is not an executor; choose one of {', '.join(EXECUTORS)}"
        )
    if scheduler and executor != "dask":
        raise ConfigError("--scheduler is only used with --executor dask")
    if executor != "dask":
        return None
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "--executor dask needs dask[distributed], which is not installed; "
            "run `pip install 'hbreg[dask]'`"
        ) from None
    if not scheduler:
        raise ConfigError(
            "--executor dask needs --scheduler tcp://HOST:PORT (the address of "
            "a running Dask scheduler)"
        )
    try:
        return distributed.Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"--scheduler: cannot connect to Dask scheduler '{scheduler}': {one_line(exc)}"
        ) from None


def local_map(
    fn: Callable, tasks: Sequence, *, workers: int, on_lost: Lost = None
) -> Iterator[Any]:
    """`fn(task)` for every task, yielded as each completes.

    In-process, in order, when one worker is asked for (or there is one task); else on a
    process pool whose workers start from a clean server process (forkserver; numba/LLVM
    state and sampler threads do not survive fork; measured a little faster than spawn), or
    are spawned where forkserver is missing. A task whose worker died yields
    `on_lost(task, exc)`, or raises without it. On an interrupt the queued tasks are
    dropped and the running workers stopped.
    """
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            yield fn(task)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context, initializer=_worker_start
    )
    futures = {pool.submit(fn, task): task for task in tasks}
    try:
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a worker died (BrokenProcessPool, MemoryError, ...)
                if on_lost is None:
                    raise
                result = on_lost(futures[future], exc)
            yield result
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    pool.shutdown(wait=True)


def _worker_start() -> None:
    """Prepare a pool worker: it makes no Dask array, so xarray need not import Dask.

    0.27 s of every worker's first fit (see `hbreg._imports`).
    """
    from hbreg._imports import xarray_without_dask

    xarray_without_dask()


def dask_map(
    client, fn: Callable, tasks: Sequence, *, keys: Sequence[str], on_lost: Lost = None
) -> Iterator[Any]:
    """`fn(task)` for every task on a Dask cluster, yielded as each completes.

    A task that failed on the cluster (KilledWorker, hbreg missing on the workers, ...)
    yields `on_lost(task, exc)`, or raises without it; on any exception the remaining
    futures are cancelled. The caller closes the client.
    """
    import distributed

    futures = client.map(fn, tasks, pure=False, key=list(keys))
    by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except Exception as exc:
                if on_lost is None:
                    raise
                result = on_lost(by_key[future.key], exc)
            yield result
    except BaseException:
        client.cancel(futures)
        raise
