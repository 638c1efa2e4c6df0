"""Run directories: atomic creation, never a complete-looking partial run, distinct names."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from hbreg import runs
from hbreg import signals as hbreg_signals
from hbreg.errors import OutputError
from hbreg.runs import RunDirectory, list_runs, load_run
from hbreg.signals import Interrupted, handle_sigterm

FROZEN = datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def signals():
    """Install hbreg's SIGINT/SIGTERM handlers for one test and put pytest's back after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    handle_sigterm()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    hbreg_signals._signals.update(signal=None, critical=0, abandoned=None)


@pytest.fixture
def frozen_clock(monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return FROZEN

    monkeypatch.setattr(runs, "datetime", Frozen)


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


@pytest.mark.unit
def test_work_happens_under_a_hidden_name_until_finish(tmp_path):
    run = RunDirectory(tmp_path, "exp")
    run.write_text("summary.csv", "a,b\n")
    assert visible(tmp_path) == []
    assert list_runs(tmp_path) == []
    assert json.loads((run.path / "manifest.json").read_text())["status"] == "running"
    final = run.finish(seed=3)
    assert hidden(tmp_path) == []
    assert visible(tmp_path) == [final.name]
    assert final.name == f"{run.stamp}_exp"
    manifest = load_run(final).manifest
    assert manifest["status"] == "complete" and manifest["seed"] == 3
    assert (final / "summary.csv").read_text() == "a,b\n"
    assert [r.complete for r in list_runs(tmp_path)] == [True]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (RuntimeError("boom"), "failed"),
        (KeyboardInterrupt(), "interrupted"),
        (Interrupted("stopped"), "interrupted"),
    ],
)
def test_abandoned_run_is_marked_with_its_error(tmp_path, exc, status):
    run = RunDirectory(tmp_path, "exp")
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        path = run.abandon(caught, seed=1)
    assert path.name == f"{run.stamp}_exp.{status}"
    manifest = load_run(path).manifest
    assert manifest["status"] == status and manifest["seed"] == 1
    assert "Traceback" in (path / "error.log").read_text()
    assert hbreg_signals.last_abandoned() == path
    [info] = list_runs(tmp_path)
    assert not info.complete and info.status == status


@pytest.mark.unit
def test_same_stamp_and_name_get_distinct_directories(tmp_path, frozen_clock):
    made = [RunDirectory(tmp_path, "exp") for _ in range(3)]
    names = [run.finish().name for run in made]
    assert names == [
        "2026-01-02_03-04-05_exp",
        "2026-01-02_03-04-05_exp_2",
        "2026-01-02_03-04-05_exp_3",
    ]


def _finish_at_the_same_time(root: str, barrier) -> str:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return FROZEN

    runs.datetime = Frozen
    run = RunDirectory(root, "exp")
    run.write_text("pid.txt", str(os.getpid()))
    barrier.wait()
    return run.finish().name


@pytest.mark.process
def test_processes_finishing_together_never_share_a_directory(tmp_path):
    n = 6
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(n)
    with ctx.Pool(n) as pool:
        names = pool.starmap(_finish_at_the_same_time, [(str(tmp_path), barrier)] * n)
    assert len(set(names)) == n
    assert sorted(visible(tmp_path)) == sorted(names)
    pids = {(tmp_path / name / "pid.txt").read_text() for name in names}
    assert len(pids) == n  # each directory holds its own process's files
    assert hidden(tmp_path) == []


@pytest.mark.unit
def test_signal_swallowed_by_the_sampler_still_blocks_finish(tmp_path, signals):
    run = RunDirectory(tmp_path, "exp")
    try:  # what nutpie and PyMC do: catch KeyboardInterrupt, return the draws so far
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    except KeyboardInterrupt:
        pass
    assert hbreg_signals.interrupted() == "SIGTERM"
    with pytest.raises(Interrupted, match="SIGTERM"):
        run.write_text("summary.csv", "")
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        run.finish()
    assert visible(tmp_path) == [f"{run.stamp}_exp.interrupted"]
    assert list_runs(tmp_path)[0].status == "interrupted"


@pytest.mark.unit
def test_handle_sigterm_forgets_signals_of_an_earlier_command(signals):
    hbreg_signals._signals["signal"] = signal.SIGINT
    handle_sigterm()
    assert hbreg_signals.interrupted() is None


@pytest.mark.unit
def test_ignored_sigint_stays_ignored(signals):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handle_sigterm()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is hbreg_signals._on_signal


@pytest.mark.unit
def test_signal_during_the_final_rename_does_not_cut_it_in_half(tmp_path, signals, monkeypatch):
    run = RunDirectory(tmp_path, "exp")
    real_replace = os.replace

    def replace_with_a_signal(src, dst):
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: deferred
        real_replace(src, dst)

    monkeypatch.setattr(runs.os, "replace", replace_with_a_signal)
    final = run.finish()
    assert load_run(final).complete


@pytest.mark.unit
def test_output_root_that_is_a_file(tmp_path):
    (tmp_path / "outputs").write_text("not a directory")
    with pytest.raises(OutputError, match="exists but is not a directory"):
        RunDirectory(tmp_path / "outputs", "exp")
    assert (tmp_path / "outputs").read_text() == "not a directory"


@pytest.mark.unit
def test_output_root_below_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create a run directory in output.root"):
        RunDirectory(tmp_path / "file" / "outputs", "exp")


@pytest.mark.unit
def test_read_only_output_root_is_a_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "outputs"
    root.mkdir()
    (root / "earlier_run").mkdir()
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # what a read-only mount answers, even to root
        if self.parent == root:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(OutputError, match="Read-only file system"):
        RunDirectory(root, "exp")
    assert visible(root) == ["earlier_run"]


@pytest.mark.unit
def test_read_only_output_root_by_mode(tmp_path):
    root = tmp_path / "outputs"
    root.mkdir()
    root.chmod(0o555)
    try:
        try:
            (root / "probe").mkdir()
        except PermissionError:
            pass
        else:
            pytest.skip(
                "mode 0o555 does not stop this user (root in CI); the read-only "
                "case is covered by test_read_only_output_root_is_a_clear_error"
            )
        with pytest.raises(OutputError, match="Permission denied"):
            RunDirectory(root, "exp")
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)


@pytest.mark.unit
def test_disk_full_while_finishing_marks_the_run_failed(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path, "exp")
    real_write = Path.write_text

    def full(self, text, *args, **kwargs):
        if self.name == "manifest.json" and '"complete"' in text:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match="No space left on device"):
        run.finish()
    assert visible(tmp_path) == [f"{run.stamp}_exp.failed"]
    assert not list_runs(tmp_path)[0].complete


@pytest.mark.unit
def test_rename_failure_leaves_only_the_hidden_directory(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path, "exp")

    def broken(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(runs.os, "replace", broken)
    with pytest.raises(OutputError, match="Input/output error"):
        run.finish()
    assert visible(tmp_path) == []  # the reserved names were given back
    assert list_runs(tmp_path) == []


@pytest.mark.unit
def test_abandon_never_raises_even_when_nothing_can_be_written(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path, "exp")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(Path, "mkdir", full)
    assert run.abandon(RuntimeError("boom")) == run.path
    assert list_runs(tmp_path) == []


@pytest.mark.unit
def test_listing_ignores_hidden_work_and_flags_what_is_not_complete(tmp_path):
    (tmp_path / ".tmp-2026-01-01_00-00-00_exp-1-abc").mkdir()  # a SIGKILLed run
    (tmp_path / "2026-01-01_00-00-01_nomanifest").mkdir()
    bad = tmp_path / "2026-01-01_00-00-02_badmanifest"
    bad.mkdir()
    (bad / "manifest.json").write_text("[1, 2]")
    (tmp_path / "a_file.txt").write_text("x")
    listed = {r.path.name: r.status for r in list_runs(tmp_path)}
    assert listed == {
        "2026-01-01_00-00-01_nomanifest": "incomplete",
        "2026-01-01_00-00-02_badmanifest": "incomplete",
    }
    assert list_runs(tmp_path / "missing") == []


@pytest.mark.unit
def test_runs_command_ignores_a_killed_run(tmp_path, cli):
    (tmp_path / ".tmp-2026-01-01_00-00-00_exp-1-abc").mkdir()
    result = cli("runs", tmp_path)
    assert result.exit_code == 0
    assert "no runs" in result.output


@pytest.mark.unit
def test_interrupted_passes_through_except_exception(tmp_path, signals):
    hbreg_signals._signals["signal"] = signal.SIGINT
    run = RunDirectory(tmp_path, "exp")
    with pytest.raises(KeyboardInterrupt):
        try:  # e.g. a simulation recording a failed replicate and going on
            run.write_text("summary.csv", "")
        except Exception:  # noqa: BLE001
            pytest.fail("an interrupt was taken for an ordinary error")


@pytest.mark.unit
def test_compare_latest_never_takes_an_unfinished_run(tmp_path, cli):
    for name, status in [
        ("2026-01-01_00-00-00_exp.failed", "failed"),
        ("2026-01-01_00-00-01_exp.interrupted", "interrupted"),
        (".tmp-2026-01-01_00-00-02_exp-1-abc", "running"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(
            json.dumps({"status": status, "kind": "fit", "name": "exp"})
        )
    assert not any(r.complete for r in list_runs(tmp_path))
    result = cli("compare", "--latest", tmp_path)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
