"""Run directories: created atomically, stamped with a manifest, listed and loaded.

A run is written under a hidden temporary name in the output root and renamed to
`<YYYY-MM-DD_HH-MM-SS>_<name>[_<n>]` only when everything is on disk, with
`manifest.json` saying `complete`. A run that fails or is interrupted is renamed to
`...<name>.failed` / `.interrupted` with `error.log`; nothing that lists runs takes
either for a complete one.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hbreg.errors import HbregError, OutputError

__all__ = ["RunDirectory", "RunInfo", "Interrupted", "list_runs", "load_run", "handle_sigterm"]

STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"


class Interrupted(HbregError):
    """Ctrl-C or SIGTERM while a run was being made."""

    exit_code = 130


def handle_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a killed run is marked, not left half-done."""

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


class RunDirectory:
    """A run being written: files go under a hidden name until `finish` renames it."""

    def __init__(self, root: str | Path, name: str, *, kind: str = "fit"):
        self.root = Path(root)
        self.name = name
        self.started = datetime.now()
        self.stamp = self.started.strftime(STAMP_FORMAT)
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(f"output.root '{self.root}' exists but is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.path = self.root / f".tmp-{self.stamp}_{name}-{os.getpid()}-{secrets.token_hex(3)}"
            self.path.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot create a run directory in '{self.root}': {exc.strerror}") from None
        self.manifest: dict = {"status": "running", "kind": kind, "name": name,
                               "started": self.started.isoformat(timespec="seconds")}
        self.write_json("manifest.json", self.manifest)

    def write_text(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write '{target}': {exc.strerror}") from None
        return target

    def write_json(self, relative: str, obj) -> Path:
        return self.write_text(relative, json.dumps(obj, indent=2, default=_jsonable) + "\n")

    def finish(self, **manifest) -> Path:
        """Write the final manifest and rename to the first free `<stamp>_<name>[_<n>]`."""
        self.manifest.update(manifest, status="complete",
                             finished=datetime.now().isoformat(timespec="seconds"))
        self.write_json("manifest.json", self.manifest)
        return self._rename(suffix="")

    def abandon(self, exc: BaseException, **manifest) -> Path:
        """Keep what was written, marked `failed` or `interrupted`, with the traceback."""
        interrupted = isinstance(exc, KeyboardInterrupt | Interrupted)
        status = "interrupted" if interrupted else "failed"
        self.manifest.update(manifest, status=status, error=f"{type(exc).__name__}: {exc}",
                             finished=datetime.now().isoformat(timespec="seconds"))
        try:
            self.write_text("error.log", "".join(traceback.format_exception(exc)))
            self.write_json("manifest.json", self.manifest)
            return self._rename(suffix=f".{status}")
        except OSError:
            return self.path

    def _rename(self, *, suffix: str) -> Path:
        for n in range(1, 10_000):
            base = f"{self.stamp}_{self.name}" + ("" if n == 1 else f"_{n}")
            final = self.root / (base + suffix)
            try:
                final.mkdir()  # reserve the name: mkdir fails if another run took it
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(f"cannot create '{final}': {exc.strerror}") from None
            os.replace(self.path, final)  # replaces the empty reserved directory atomically
            self.path = final
            return final
        raise OutputError(f"no free run directory name for '{self.name}' in '{self.root}'")


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
        return self.manifest.get("status", "unknown")

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    @property
    def complete(self) -> bool:
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
    return RunInfo(path=path, manifest=manifest)


def list_runs(root: str | Path, *, kind: str | None = None) -> list[RunInfo]:
    """Every run under `root` (hidden work-in-progress excluded), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for child in root.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        try:
            info = load_run(child)
        except OutputError:
            info = RunInfo(path=child, manifest={"status": "incomplete", "name": child.name})
        if kind is None or info.manifest.get("kind", "fit") == kind:
            runs.append(info)
    runs.sort(key=lambda r: (r.manifest.get("started", ""), r.path.name), reverse=True)
    return runs


def elapsed(start: float) -> float:
    """Seconds since `start` (a perf_counter value), rounded for the manifest."""
    return round(time.perf_counter() - start, 3)
