"""Run directories: created atomically, stamped with a manifest, listed and loaded.

A run is written under a hidden temporary name in the output root and renamed to
`<YYYY-MM-DD_HH-MM-SS>_<name>[_<n>]` only when everything is on disk, with
`manifest.json` saying `complete`. A run that fails or is interrupted is renamed to
`...<name>.failed` / `.interrupted` with `error.log`; nothing that lists runs takes
either for a complete one. A process killed outright (SIGKILL, the kernel's OOM killer,
a native crash in the sampler, power loss) leaves only the hidden `.tmp-...` directory,
which `list_runs` ignores; `leftovers` finds such directories (`abandoned` once the
process named in them is gone) so that `hbreg runs` shows them and `--clean` removes them.

`RunDirectory` is the one way a command opens a run: used as a context manager, it
finishes the run when the block ends and abandons it (failed or interrupted, with the
traceback) when the block raises, so no command writes that lifecycle itself. A signal
that the sampler swallowed still stops `finish` (see `hbreg.signals`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hbreg.errors import OutputError
from hbreg.signals import Interrupted, interrupted, note_abandoned, uninterruptible

__all__ = [
    "RunDirectory",
    "RunInfo",
    "elapsed",
    "leftovers",
    "list_runs",
    "load_run",
    "remove_leftovers",
]

STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
TEMP_PREFIX = ".tmp-"


class RunDirectory:
    """A run being written: files go under a hidden name until `finish` renames it.

    Use it as a context manager: `with RunDirectory(root, name, **manifest) as run:`.
    The manifest fields given here (mutable values such as a timings dict are written
    as they are at the end) go into `manifest.json` whether the run completes or not.
    """

    def __init__(self, root: str | Path, name: str, *, kind: str = "fit", **manifest):
        self.root = Path(root)
        self.name = name
        self.started = datetime.now()
        self.stamp = self.started.strftime(STAMP_FORMAT)
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(
                f"output.root '{self.root}' exists but is not a directory; "
                "remove it or set output.root to a directory"
            )
        hidden = f"{TEMP_PREFIX}{self.stamp}_{name}-{os.getpid()}-{secrets.token_hex(3)}"
        self.path = self.root / hidden
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except OSError as exc:
            raise OutputError(
                f"cannot create a run directory in output.root '{self.root}': {_reason(exc)}"
            ) from None
        self.manifest: dict = {
            "status": "running",
            "kind": kind,
            "name": name,
            "started": self.started.isoformat(timespec="seconds"),
            **manifest,
        }
        self.closed = False
        try:
            self._write("manifest.json", _to_json(self.manifest))
        except OutputError:
            shutil.rmtree(self.path, ignore_errors=True)  # nothing was made: leave nothing
            raise

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Finish on a clean exit, abandon on an exception (which then propagates)."""
        if not self.closed:
            if exc is None:
                self.finish()
            else:
                self.abandon(exc)
        return False

    def write_text(self, relative: str, text: str) -> Path:
        """Write a file of the run; refused once a signal arrived (the run is not finishing)."""
        self._check_signal()
        return self._write(relative, text)

    def write_json(self, relative: str, obj) -> Path:
        """Write `obj` as indented JSON (numpy scalars and paths allowed)."""
        return self.write_text(relative, _to_json(obj))

    def write_bytes(self, relative: str, data: bytes | memoryview) -> Path:
        """Write a binary file of the run (e.g. `idata.nc` serialized in memory first).

        Serializing first and writing here turns a full disk into one OutputError; HDF5
        writing straight to a full disk fails mid-file and can crash the interpreter.
        """
        self._check_signal()
        target = self.path / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            raise OutputError(f"cannot write '{target}': {_reason(exc)}") from None
        return target

    def finish(self, **manifest) -> Path:
        """Write the final manifest and rename to the first free `<stamp>_<name>[_<n>]`.

        A run during which SIGINT/SIGTERM arrived is marked interrupted instead, even when
        the sampler swallowed the signal and returned early. A run that cannot be
        completed (disk full, root gone read-only) is marked failed.
        """
        with uninterruptible():
            self.closed = True
            signame = interrupted()
            if signame is None:
                try:
                    self.manifest.update(
                        manifest,
                        status="complete",
                        finished=datetime.now().isoformat(timespec="seconds"),
                    )
                    self._write("manifest.json", _to_json(self.manifest))
                    return self._rename(suffix="")
                except OutputError as exc:
                    self.abandon(exc, **manifest)
                    raise
        exc = Interrupted(f"stopped by {signame}; the draws made so far are not a complete run")
        self.abandon(exc, **manifest)
        raise exc

    def abandon(self, exc: BaseException, **manifest) -> Path:
        """Keep what was written, marked `failed` or `interrupted`, with the traceback.

        Never raises: it runs while another exception is on its way to the user. If even
        the rename fails, the run stays under its hidden name, which listing ignores.
        """
        with uninterruptible():
            self.closed = True
            interrupted_ = isinstance(exc, KeyboardInterrupt)
            status = "interrupted" if interrupted_ else "failed"
            try:
                self.manifest.update(
                    manifest,
                    status=status,
                    error=f"{type(exc).__name__}: {exc}",
                    finished=datetime.now().isoformat(timespec="seconds"),
                )
            except Exception:  # noqa: BLE001 - a bad manifest value must not hide exc
                self.manifest.update(status=status, error=repr(exc))
            for relative, text in (
                ("error.log", lambda: "".join(traceback.format_exception(exc))),
                ("manifest.json", lambda: _to_json(self.manifest)),
            ):
                try:
                    self._write(relative, text())
                except Exception:  # noqa: BLE001, S112 - best effort: the disk may be full
                    continue
            try:
                self._rename(suffix=f".{status}")
            except Exception:  # noqa: BLE001 - stays hidden, never complete-looking
                pass
            note_abandoned(self.path)
            return self.path

    def _check_signal(self) -> None:
        signame = interrupted()
        if signame is not None:
            raise Interrupted(f"stopped by {signame} before the run was complete")

    def _write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write '{target}': {_reason(exc)}") from None
        return target

    def _rename(self, *, suffix: str) -> Path:
        for n in range(1, 10_000):
            base = f"{self.stamp}_{self.name}" + ("" if n == 1 else f"_{n}")
            final = self.root / (base + suffix)
            try:
                final.mkdir()  # reserve the name: mkdir fails if another run took it
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(f"cannot create '{final}': {_reason(exc)}") from None
            try:
                os.replace(self.path, final)  # replaces the empty reserved directory atomically
            except OSError as exc:
                try:
                    final.rmdir()
                except OSError:
                    pass
                raise OutputError(
                    f"cannot rename '{self.path}' to '{final}': {_reason(exc)}"
                ) from None
            self.path = final
            return final
        raise OutputError(f"no free run directory name for '{self.name}' in '{self.root}'")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _to_json(obj) -> str:
    return json.dumps(obj, indent=2, default=_jsonable) + "\n"


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


@dataclass(frozen=True)
class RunInfo:
    """One run directory as listed: its manifest, or why it has none."""

    path: Path
    manifest: dict

    @property
    def status(self) -> str:
        """`complete`, `running`, `failed`, `interrupted` or `incomplete` (no manifest)."""
        return self.manifest.get("status", "unknown")

    @property
    def name(self) -> str:
        """The experiment name from the manifest, else the directory name."""
        return self.manifest.get("name", self.path.name)

    @property
    def complete(self) -> bool:
        """Only a run whose manifest says `complete` is one."""
        return self.status == "complete"


def load_run(path: str | Path) -> RunInfo:
    """Read a run's manifest; a missing or unreadable one is an error naming the path."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise OutputError(f"run directory '{path}' does not exist")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise OutputError(f"'{path}' is not a run directory: no readable manifest.json") from None
    if not isinstance(manifest, dict):
        raise OutputError(f"'{path}' is not a run directory: manifest.json is not a JSON object")
    return RunInfo(path=path, manifest=manifest)


def list_runs(root: str | Path, *, kind: str | None = None) -> list[RunInfo]:
    """Every run under `root`, newest first; hidden work in progress (`.tmp-...`) excluded.

    Runs marked failed or interrupted are listed with that status; a directory without
    a readable manifest is listed as `incomplete`. Only `complete` runs are complete.
    """
    runs = []
    for child in _directories(root):
        if child.name.startswith("."):
            continue
        try:
            info = load_run(child)
        except OutputError:
            info = RunInfo(path=child, manifest={"status": "incomplete", "name": child.name})
        if kind is None or info.manifest.get("kind", "fit") == kind:
            runs.append(info)
    runs.sort(key=lambda r: (str(r.manifest.get("started", "")), r.path.name), reverse=True)
    return runs


def _directories(root: str | Path) -> list[Path]:
    """The directories directly under an output root, sorted; none when it does not exist."""
    root = Path(root)
    if not root.is_dir():
        return []
    try:
        return sorted(child for child in root.iterdir() if child.is_dir())
    except OSError as exc:
        raise OutputError(f"cannot list runs in '{root}': {_reason(exc)}") from None


_TEMP_PID = re.compile(r"-(\d+)-[0-9a-f]{6}$")


def leftovers(root: str | Path) -> list[RunInfo]:
    """Hidden `.tmp-...` run directories under `root`, newest first.

    Status `running` while the process that writes it (its pid is in the name) is alive,
    else `abandoned`: the process was killed before it could mark the run failed.
    """
    found = []
    for child in _directories(root):
        if not child.name.startswith(TEMP_PREFIX):
            continue
        try:
            manifest = dict(load_run(child).manifest)
        except OutputError:
            manifest = {"name": child.name}
        match = _TEMP_PID.search(child.name)
        alive = match is not None and _process_alive(int(match.group(1)))
        manifest["status"] = "running" if alive else "abandoned"
        found.append(RunInfo(path=child, manifest=manifest))
    found.sort(key=lambda r: (str(r.manifest.get("started", "")), r.path.name), reverse=True)
    return found


def remove_leftovers(root: str | Path) -> list[Path]:
    """Delete the `abandoned` hidden directories under `root` (never a running one)."""
    removed = []
    for info in leftovers(root):
        if info.status != "abandoned":
            continue
        try:
            shutil.rmtree(info.path)
        except OSError as exc:
            raise OutputError(f"cannot remove '{info.path}': {_reason(exc)}") from None
        removed.append(info.path)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether `pid` is a live process that could be hbreg (not a reused pid of another program)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    except OSError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return b"hbreg" in cmdline or b"python" in cmdline


def elapsed(start: float) -> float:
    """Seconds since `start` (a perf_counter value), rounded for the manifest."""
    return round(time.perf_counter() - start, 3)
