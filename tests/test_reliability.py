"""Nothing lost, nothing half-written: real `hbreg fit` processes killed, raced and starved.

Each test here asserts the same contract: a run directory either is complete (manifest
status `complete`, a name without suffix) or is visibly not (`.failed`, `.interrupted`,
or a hidden `.tmp-...` that nothing lists), and the terminal gets one readable line with
its exit code (README, "Exit codes"), never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hbreg.errors import SamplingError
from hbreg.resources import BASELINE_BYTES
from hbreg.runs import list_runs

HBREG_SCRIPT = Path(sys.executable).with_name("hbreg")
HBREG = (
    [str(HBREG_SCRIPT)]
    if HBREG_SCRIPT.exists()
    else [sys.executable, "-c", "from hbreg.cli import app; app()"]
)
# A fit that would sample for minutes: 1 chain of 200,000 draws of the centered funnel.
LONG = {"draws": 200_000, "tune": 200, "chains": 1, "seed": 11}
TINY = {"draws": 20, "tune": 20, "chains": 1, "seed": 3}
FROZEN_CLOCK = """
import datetime, hbreg.runs
class Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5)
hbreg.runs.datetime = Frozen
from hbreg.cli import app
app()
"""

# hbreg with the resource estimate switched off (to reach failures it would prevent)
NO_ESTIMATE = [
    sys.executable,
    "-c",
    "import hbreg.resources as r; r.check_resources = lambda estimate: []\n"
    "from hbreg.cli import app\napp()",
]


def visible(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


def hidden(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("."))


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def radon_config(tmp_path: Path, sampler: dict, **model) -> Path:
    config = {
        "name": "radon_hier",
        "data": {
            "dataset": "radon",
            "outcome": "log_radon",
            "predictors": ["floor"],
            "group": "county",
        },
        "model": {"pooling": "hierarchical", **model},
        "sampler": sampler,
        "output": {"root": str(tmp_path / "outputs"), "plots": []},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# A background job of a non-interactive shell starts with SIGINT ignored, and Python keeps
# it ignored; a user's Ctrl-C reaches a foreground process with the default in place. This
# shim restores the default and execs the command (no preexec_fn: unsafe with threads).
SIGINT_DEFAULT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def start(args, *, cwd=None, command=HBREG) -> subprocess.Popen:
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "160"}  # live progress in the pipe
    return subprocess.Popen(
        [*SIGINT_DEFAULT, *command, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
    )


def wait_for_sampling(process: subprocess.Popen, root: Path, *, timeout: float = 180) -> str:
    """Block until the progress bar shows draws being made; return the output so far."""
    os.set_blocking(process.stdout.fileno(), False)
    output, deadline, tmp_seen = b"", time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        output += process.stdout.read() or b""
        done = [int(n) for n in re.findall(rb"(\d+)/\d+ draws", output)]
        if done and max(done) > 0:
            return output.decode(errors="replace")
        if process.poll() is not None:
            pytest.fail(f"hbreg exited early ({process.returncode}): {output.decode()[-2000:]}")
        # fallback if no live progress reaches the pipe: the run exists and compiled by now
        if tmp_seen is None and root.is_dir() and hidden(root):
            tmp_seen = time.monotonic()
        if tmp_seen is not None and time.monotonic() - tmp_seen > 12:
            return output.decode(errors="replace")
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"sampling never started: {output.decode()[-2000:]}")


def finish(process: subprocess.Popen, *, timeout: float = 120) -> tuple[int, str]:
    os.set_blocking(process.stdout.fileno(), True)
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out.decode(errors="replace")


@pytest.mark.process
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_sampling_marks_the_run_interrupted(tmp_path, signum):
    root = tmp_path / "outputs"
    process = start(["fit", radon_config(tmp_path, LONG, parameterization="centered")])
    wait_for_sampling(process, root)
    time.sleep(0.5)
    sent = time.monotonic()
    process.send_signal(signum)
    code, output = finish(process)
    reaction = time.monotonic() - sent
    print(f"{signal.Signals(signum).name}: exit {code} after {reaction:.1f} s")

    assert code == 130, output[-3000:]
    assert "Traceback" not in output
    assert "interrupted:" in output and signal.Signals(signum).name in output
    [run] = visible(root)
    assert run.name.endswith("_radon_hier.interrupted")
    assert manifest(run)["status"] == "interrupted"
    assert "Traceback" in (run / "error.log").read_text()
    assert hidden(root) == []
    assert not any(r.complete for r in list_runs(root))
    assert reaction < 60


@pytest.mark.process
def test_sigkill_leaves_only_a_hidden_directory_that_nothing_lists(tmp_path, cli):
    root = tmp_path / "outputs"
    process = start(["fit", radon_config(tmp_path, LONG, parameterization="centered")])
    wait_for_sampling(process, root)
    process.kill()
    code, _ = finish(process)
    assert code == -signal.SIGKILL
    assert visible(root) == []
    [tmp] = hidden(root)
    assert tmp.name.startswith(".tmp-") and manifest(tmp)["status"] == "running"
    assert list_runs(root) == []
    result = cli("runs", root)
    assert result.exit_code == 0 and "no runs" in result.output
    # ... but `hbreg runs` shows the leftover as abandoned, and --clean removes it
    row = next(line for line in result.output.splitlines() if tmp.name in line)
    assert "abandoned" in row
    assert cli("runs", root, "--clean", "--yes").exit_code == 0
    assert hidden(root) == []


@pytest.mark.process
def test_two_fits_started_in_the_same_second_get_two_complete_directories(tmp_path):
    # Real, parallel `hbreg fit` processes; their clock is frozen so both really start
    # "in the same second" and race for the same directory name when they finish.
    data = tmp_path / "shared" / "radon.csv"
    data.parent.mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"y": rng.normal(size=60), "x": rng.integers(0, 2, 60), "g": rng.integers(0, 4, 60)}
    ).to_csv(data, index=False)
    work = tmp_path / "work"
    work.mkdir()
    config = {
        "name": "same",
        "data": {"path": str(data), "outcome": "y", "predictors": ["x"], "group": "g"},
        "sampler": TINY,
        "output": {"root": "outputs", "plots": []},
    }
    (work / "same.yaml").write_text(yaml.safe_dump(config))
    processes = [
        start(["fit", "same.yaml"], cwd=work, command=[sys.executable, "-c", FROZEN_CLOCK])
        for _ in range(2)
    ]
    results = [finish(p, timeout=300) for p in processes]
    for code, output in results:
        assert code == 0, output[-3000:]
    root = work / "outputs"
    names = [p.name for p in visible(root)]
    assert names == ["2026-01-02_03-04-05_same", "2026-01-02_03-04-05_same_2"]
    assert hidden(root) == []
    printed = sorted(
        re.search(r"run directory: (\S+)", out.replace("\x1b[1m", "").replace("\x1b[0m", "")).group(
            1
        )
        for _, out in results
    )
    assert [Path(p).name for p in printed] == names
    for run in visible(root):
        m = manifest(run)
        assert m["status"] == "complete"
        # the data file is outside the working directory: allowed, and said so
        assert m["data"]["outside_working_tree"] is True
        assert (run / "idata.nc").is_file() and (run / "summary.csv").is_file()


# Failures inside a run, in process (no sampling needed unless said) ----------------------


def _assert_marked(root: Path, status: str) -> Path:
    [run] = visible(root)
    assert run.name.endswith(f".{status}")
    assert manifest(run)["status"] == status
    assert (run / "error.log").read_text().startswith("Traceback")
    assert not any(r.complete for r in list_runs(root))
    return run


@pytest.mark.unit
@pytest.mark.parametrize(
    ("exc", "code", "status", "message"),
    [
        (
            SamplingError("sampling with nutpie failed: boom"),
            3,
            "failed",
            "error: sampling with nutpie failed: boom",
        ),
        (KeyboardInterrupt(), 130, "interrupted", "interrupted: stopped by Ctrl-C"),
        (
            OSError(28, "No space left on device"),
            3,
            "failed",
            "error: cannot read or write: No space left on device",
        ),
        (MemoryError(), 3, "failed", "error: out of memory"),
        (
            ZeroDivisionError("division by zero"),
            1,
            "failed",
            "internal error, this is a bug in hbreg: ZeroDivisionError: division by zero. "
            "Rerun with --debug",
        ),
    ],
    ids=["sampling-error", "ctrl-c", "disk-full", "memory", "bug"],
)
def test_exception_during_sampling(
    exc, code, status, message, cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    def failing_sample(*args, **kwargs):
        raise exc

    monkeypatch.setattr("hbreg.fit.sample", failing_sample)
    radon_hier_config["sampler"] = dict(TINY)
    result = cli("fit", write_config(radon_hier_config))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    run = _assert_marked(tmp_path / "outputs", status)
    assert f"kept in '{run}'" in result.output


@pytest.mark.unit
def test_debug_shows_the_traceback(cli, write_config, radon_hier_config, tmp_path, monkeypatch):
    def failing_sample(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("hbreg.fit.sample", failing_sample)
    radon_hier_config["sampler"] = dict(TINY)
    result = cli("--debug", "fit", write_config(radon_hier_config))
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError" in result.output
    _assert_marked(tmp_path / "outputs", "failed")


@pytest.mark.unit
def test_user_error_shows_traceback_only_with_debug(cli, tmp_path):
    quiet = cli("validate", tmp_path / "nope.yaml")
    loud = cli("--debug", "validate", tmp_path / "nope.yaml")
    assert quiet.exit_code == loud.exit_code == 2
    assert "Traceback" not in quiet.output
    assert "Traceback" in loud.output and "ConfigError" in loud.output


@pytest.mark.sampling
def test_exception_while_plotting_marks_the_run_failed(
    cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    class BrokenPlots:  # the plot workers raise what drawing raised (tests/test_plots.py)
        def __init__(self, kinds):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def draw(self, *args, **kwargs):
            pass

        def wait(self):
            raise ValueError("cannot draw")

    monkeypatch.setattr("hbreg.plots.worker.PlotWorkers", BrokenPlots)
    radon_hier_config["sampler"] = dict(TINY)
    config = {
        **radon_hier_config,
        "output": {"root": str(tmp_path / "outputs"), "plots": ["posterior"]},
    }
    result = cli("fit", write_config(config))
    assert result.exit_code == 1, result.output
    assert "bug in hbreg: ValueError: cannot draw" in result.output
    assert "Traceback" not in result.output
    run = _assert_marked(tmp_path / "outputs", "failed")
    assert (run / "summary.csv").is_file()  # what was made before the crash is kept


@pytest.mark.unit
def test_output_root_that_is_a_file_exits_3_before_sampling(
    cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    monkeypatch.setattr("hbreg.fit.sample", lambda *a, **k: pytest.fail("sampled"))
    root = tmp_path / "outputs"
    root.write_text("precious")
    result = cli("fit", write_config(radon_hier_config))
    assert result.exit_code == 3
    assert f"output.root '{root}' exists but is not a directory" in result.output
    assert "Traceback" not in result.output
    assert root.read_text() == "precious"


@pytest.mark.process
def test_read_only_output_root_exits_3_and_keeps_earlier_runs(
    cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    monkeypatch.setattr("hbreg.fit.sample", lambda *a, **k: pytest.fail("sampled"))
    root = tmp_path / "outputs"
    earlier = root / "2026-01-01_00-00-00_radon_hier"
    earlier.mkdir(parents=True)
    (earlier / "manifest.json").write_text('{"status": "complete"}')
    root.chmod(0o555)
    immutable = False
    try:
        try:
            (root / "probe").mkdir()
        except PermissionError:
            pass
        else:  # root ignores the mode (CI runs as root): make the directory immutable
            (root / "probe").rmdir()
            chattr = shutil.which("chattr")
            done = chattr and subprocess.run([chattr, "+i", str(root)], capture_output=True)
            if not done or done.returncode != 0:
                pytest.skip(
                    "running as root without chattr +i: cannot make a read-only root "
                    "(test_runs.py simulates one)"
                )
            immutable = True
        result = cli("fit", write_config(radon_hier_config))
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(root)], check=True)
        root.chmod(0o755)
    assert result.exit_code == 3, result.output
    assert f"cannot create a run directory in output.root '{root}'" in result.output
    assert "Traceback" not in result.output
    assert visible(root) == [earlier]


@pytest.mark.process
def test_full_disk_mid_run_exits_3_and_marks_the_run_failed(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        config = radon_config(tmp_path, TINY)
        raw = yaml.safe_load(config.read_text())
        raw["output"]["root"] = str(small / "outputs")
        config.write_text(yaml.safe_dump(raw))
        # the resource estimate sees the 96 KiB disk first: refused, nothing written ...
        predicted, said = finish(start(["fit", config]), timeout=300)
        assert not (small / "outputs").exists()
        # ... so the disk filling up mid-run is forced with the estimate switched off
        code, output = finish(start(["fit", config], command=NO_ESTIMATE), timeout=300)
        root = small / "outputs"
        runs_left = visible(root)
        assert not any(r.complete for r in list_runs(root))
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
    assert predicted == 2, said[-3000:]
    assert "of disk (1 chains x 20 draws" in said and "set output.root to a disk" in said
    assert code == 3, output[-3000:]
    assert "No space left on device" in output
    assert "Traceback" not in output
    assert [r.name.endswith(".failed") for r in runs_left] == [True]


# Absurd sizes, native crashes and leftovers (issue 15) ------------------------------------


@pytest.mark.process
def test_mistyped_draws_exit_2_within_a_second_and_write_nothing(tmp_path):
    # A real process: what a user waits for, interpreter start included.
    config = radon_config(tmp_path, {"draws": 1_000_000_000})
    started = time.monotonic()
    result = subprocess.run([*HBREG, "fit", str(config)], capture_output=True, text=True)
    took = time.monotonic() - started
    print(f"draws 1e9 refused in {took:.2f} s")
    assert result.returncode == 2, result.stderr
    assert "sampler -> draws: 1,000,000,000 is above the limit of 1,000,000" in result.stderr
    assert "8.0 GB per parameter and chain" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "outputs").exists()
    assert took < 3  # about 0.5 s here; generous for a loaded CI machine


@pytest.mark.unit
def test_run_beyond_memory_is_refused_before_anything_is_written(
    cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    available = BASELINE_BYTES + 10_000_000  # the libraries fit, the draws do not
    monkeypatch.setattr("hbreg.resources.available_memory", lambda: available)
    monkeypatch.setattr("hbreg.fit.sample", lambda *a, **k: pytest.fail("sampled"))
    result = cli("fit", write_config(radon_hier_config))
    assert result.exit_code == 2, result.output
    assert "the run needs about" in result.output
    assert "of memory (2 chains x 300 draws x 175 parameters, 919 observations)" in result.output
    # the pointwise log-likelihood (600 draws x 919 rows) outweighs the posterior here
    assert "610.0 MB is available; lower output.pointwise_limit" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "outputs").exists()


@pytest.mark.unit
def test_run_beyond_the_free_disk_is_refused_naming_output_root(
    cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("hbreg.resources.shutil.disk_usage", lambda p: usage(10**9, 0, 10**6))
    result = cli("fit", write_config(radon_hier_config))
    assert result.exit_code == 2, result.output
    assert "of disk (2 chains x 300 draws x 175 parameters" in result.output
    assert f"and 1.0 MB is free in '{tmp_path}'" in result.output
    assert "set output.root to a disk with more space" in result.output
    assert not (tmp_path / "outputs").exists()


@pytest.mark.unit
def test_run_close_to_the_memory_limit_warns_with_the_numbers(
    cli, write_config, radon_hier_config, monkeypatch
):
    from hbreg.config import parse_config
    from hbreg.fit import prepare
    from hbreg.resources import estimate_resources

    config = parse_config(radon_hier_config)
    needed = estimate_resources(config, prepare(config)[1], parameterization="marginal").memory
    monkeypatch.setattr("hbreg.resources.available_memory", lambda: int(needed * 1.5))
    result = cli("validate", write_config(radon_hier_config))
    assert result.exit_code == 0, result.output
    assert "estimate: memory ~" in result.output and "disk ~" in result.output
    assert "note: close to the limit: the run needs about" in result.output
    warned = []
    prepare(config, warn=warned.append)
    assert len(warned) == 1 and "of memory (2 chains x 300 draws" in warned[0]


@pytest.mark.unit
def test_estimate_counts_group_coefficients_and_pointwise_draws(radon_hier_config):
    from hbreg.config import parse_config
    from hbreg.fit import prepare
    from hbreg.resources import VALUE_BYTES, estimate_resources

    config = parse_config(radon_hier_config)
    data = prepare(config)[1]
    est = estimate_resources(config, data, parameterization="marginal")
    samples = 2 * 300
    assert est.parts["posterior"] == samples * (5 + 2 * 85) * VALUE_BYTES
    assert est.parts["log_likelihood"] == samples * 919 * VALUE_BYTES  # under the limit
    capped = parse_config({**radon_hier_config, "output": {"pointwise_limit": 1000, "plots": []}})
    est = estimate_resources(capped, data, parameterization="marginal")
    assert est.parts["log_likelihood"] == 0  # not stored: over output.pointwise_limit
    assert est.parts["posterior_predictive"] == 2 * 1 * 919 * VALUE_BYTES  # 1 draw per chain


class PanicException(BaseException):
    """What pyo3 raises in Python for a panic in nutpie's Rust code: not an Exception."""


@pytest.mark.sampling
def test_native_panic_in_the_sampler_exits_3_with_one_line_and_a_failed_run(
    cli, write_config, radon_hier_config, tmp_path, monkeypatch
):
    import nutpie

    def panicking(*args, **kwargs):
        raise PanicException(
            "called `Result::unwrap()` on an `Err` value: capacity overflow\n"
            "note: run with `RUST_BACKTRACE=1` to display a backtrace"
        )

    monkeypatch.setattr(nutpie, "sample", panicking)
    radon_hier_config["sampler"] = {**TINY, "backend": "nutpie"}
    result = cli("fit", write_config(radon_hier_config))
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output  # one line, not a panic's backtrace hint
    assert lines[0].startswith(
        "error: sampling with nutpie failed: PanicException: called `Result::unwrap()`"
    )
    assert "Traceback" not in result.output and "RUST_BACKTRACE" not in result.output
    run = _assert_marked(tmp_path / "outputs", "failed")
    assert "PanicException" in (run / "error.log").read_text()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leftover(root: Path, name: str, pid: int) -> Path:
    path = root / f".tmp-2026-01-02_03-04-05_{name}-{pid}-abc123"
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(
        json.dumps({"status": "running", "name": name, "started": "2026-01-02T03:04:05"})
    )
    return path


@pytest.mark.process
def test_runs_shows_leftovers_and_clean_removes_only_abandoned_ones(cli, tmp_path):
    root = tmp_path / "outputs"
    dead = _leftover(root, "killed_fit", _dead_pid())
    alive = _leftover(root, "live_fit", os.getpid())
    listed = cli("runs", root)
    assert listed.exit_code == 0, listed.output
    assert "no runs" in listed.output
    row = next(line for line in listed.output.splitlines() if dead.name in line)
    assert "abandoned" in row and "killed_fit" in row
    row = next(line for line in listed.output.splitlines() if alive.name in line)
    assert "running" in row
    assert "hbreg runs --clean" in listed.output

    declined = CliRunnerInput(cli, "n\n")("runs", root, "--clean")
    assert declined.exit_code == 0 and "nothing removed" in declined.output
    assert dead.exists()
    accepted = CliRunnerInput(cli, "y\n")("runs", root, "--clean")
    assert accepted.exit_code == 0, accepted.output
    assert "removed 1 abandoned directories" in accepted.output
    assert not dead.exists() and alive.exists()  # a running fit is never removed

    again = _leftover(root, "killed_again", _dead_pid())
    forced = cli("runs", root, "--clean", "--yes")
    assert forced.exit_code == 0 and not again.exists() and alive.exists()
    assert "nothing to clean" in cli("runs", root, "--clean").output


def CliRunnerInput(_cli, text: str):  # noqa: N802 - reads like the runner it wraps
    from typer.testing import CliRunner

    from hbreg.cli import app

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args], input=text)

    return invoke


@pytest.mark.process
def test_runs_in_a_pipe_shows_full_run_names(tmp_path):
    root = tmp_path / "outputs"
    long_name = "radon_hierarchical_with_a_long_experiment_name_for_compare"
    for stamp in ("2026-01-02_03-04-05", "2026-01-03_03-04-05"):
        run = root / f"{stamp}_{long_name}"
        run.mkdir(parents=True)
        (run / "manifest.json").write_text(
            json.dumps(
                {
                    "status": "complete",
                    "name": long_name,
                    "started": stamp.replace("_", "T"),
                    "pooling": "hierarchical",
                    "diagnostics": {"divergences": 0, "worst_r_hat": 1.0042},
                }
            )
        )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    result = subprocess.run(
        f"{' '.join(HBREG)} runs {root} | cat", shell=True, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for stamp in ("2026-01-02_03-04-05", "2026-01-03_03-04-05"):
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"{stamp}_"))
        assert f"{stamp}_{long_name}  {long_name}" in line and "1.004" in line


@pytest.mark.sampling
def test_outcome_a_million_times_its_residual_sd_gives_the_same_posterior(cli, tmp_path):
    # Radon's log radon + 1e6: a residual sd of 0.75 under a mean of a million (a price
    # level, a timestamp). With draws 200 / tune 200 it used to end at sigma ~50,000,
    # r_hat 2.5, 74 divergences; it must give the unshifted posterior, intercepts + 1e6.
    from hbreg.config import parse_config
    from hbreg.data.load import load_frame

    shift = 1e6
    base = {
        "name": "radon",
        "data": {"outcome": "log_radon", "predictors": ["floor"], "group": "county"},
        "priors": {"overrides": {"mu_intercept": {"dist": "Normal", "mu": 0, "sigma": 1e7}}},
        "sampler": {"draws": 200, "tune": 200, "chains": 4, "seed": 1},
        "output": {"root": str(tmp_path / "outputs"), "plots": []},
    }
    frame, _ = load_frame(parse_config({**base, "data": {**base["data"], "dataset": "radon"}}))
    summaries = {}
    for name, offset in (("plain", 0.0), ("shifted", shift)):
        path = tmp_path / f"{name}.csv"
        frame.assign(log_radon=frame["log_radon"] + offset).to_csv(path, index=False)
        config = tmp_path / f"{name}.yaml"
        raw = {**base, "name": name, "data": {**base["data"], "path": str(path)}}
        config.write_text(yaml.safe_dump(raw))
        result = cli("fit", config)
        assert result.exit_code == 0, result.output
        assert ": 0 divergences, worst r_hat 1.0" in result.output, result.output
        [run] = [p for p in visible(tmp_path / "outputs") if p.name.endswith(f"_{name}")]
        summaries[name] = pd.read_csv(run / "summary.csv", index_col=0)
        if offset:  # the terminal table shows the seven-digit mean whole
            row = next(x for x in result.output.splitlines() if x.startswith("mu_intercept "))
            assert re.search(r"\b100000[01]\.\d{3}\b", row), row
    plain, shifted = summaries["plain"], summaries["shifted"]
    assert list(plain.index) == list(shifted.index)
    moved = [p for p in plain.index if p == "mu_intercept" or p.startswith("intercept[")]
    expected = plain["mean"] + pd.Series(shift, index=moved).reindex(plain.index, fill_value=0)
    z = (shifted["mean"] - expected) / np.hypot(plain["mcse_mean"], shifted["mcse_mean"])
    print(f"largest |z| {z.abs().max():.2f} at {z.abs().idxmax()}")
    assert (z.abs() < 5).all(), z.abs().sort_values().tail()
    assert np.allclose(shifted["sd"], plain["sd"], rtol=0.25)
    ratio = shifted["ess_bulk"] / plain["ess_bulk"]
    print(f"ESS ratio shifted/plain: {ratio.min():.2f}-{ratio.max():.2f}")
    assert ratio.between(1 / 3, 3).all(), ratio.sort_values()


LABELS = ["Zürich 🏠", "São Paulo ★", "Ærø ♥", "Québec", "東京 🚀", "x$y$"]


@pytest.mark.sampling
def test_labels_in_any_script_plot_without_warnings_and_are_stored_exactly(
    cli, write_config, tmp_path
):
    import warnings

    import xarray as xr

    rng = np.random.default_rng(0)
    g = rng.integers(0, len(LABELS), 120)
    x = rng.integers(0, 2, 120)
    y = 1 + 0.5 * x + rng.normal(0, 0.3, len(LABELS))[g] + rng.normal(0, 0.5, 120)
    data = tmp_path / "sites.csv"
    pd.DataFrame({"y": y, "x": x, "site": [LABELS[i] for i in g]}).to_csv(data, index=False)
    config = {
        "name": "sites",
        "data": {"path": str(data), "outcome": "y", "predictors": ["x"], "group": "site"},
        "sampler": TINY,
        "output": {"root": str(tmp_path / "outputs"), "plots": ["forest", "pair", "posterior"]},
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli("fit", write_config(config))
    assert result.exit_code == 0, result.output
    glyphs = [
        str(w.message) for w in caught if "Glyph" in str(w.message) or "font" in str(w.message)
    ]
    assert glyphs == []
    assert "Glyph" not in result.output
    [run] = visible(tmp_path / "outputs")
    assert sorted((run / "plots").glob("*.png")) and (run / "plots" / "forest.png").stat().st_size
    summary = pd.read_csv(run / "summary.csv", index_col=0, encoding="utf-8")
    for label in LABELS:
        assert f"intercept[{label}]" in summary.index
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        assert sorted(tree["posterior"]["site"].values.tolist()) == sorted(LABELS)


@pytest.mark.unit
def test_drawable_uses_a_fallback_font_or_a_white_square(monkeypatch):
    from hbreg.plots import common

    primary = frozenset(map(ord, "abcdefghijklmnopqrstuvwxyz üé$\\□"))
    monkeypatch.setattr(common, "_fonts", lambda: [("sans-serif", primary), ("Symbola", {0x2605})])
    assert common.drawable("zürich") == ("zürich", None)
    assert common.drawable("a ★") == ("a ★", ["sans-serif", "Symbola"])
    assert common.drawable("a 🏠") == ("a □", None)
    assert common.drawable("x$y$") == ("x\\$y\\$", None)  # a dollar, not mathtext
    assert common.drawable("x\\$")[0] == "x\\$"  # already escaped: unchanged
