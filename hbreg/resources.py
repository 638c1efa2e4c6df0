"""What a fit will hold in memory and write to disk, estimated before anything is sampled.

A mistyped `draws` used to start sampling and end in a Rust panic (the sampler's
allocation failing) with a hidden temporary directory left behind. `check_resources`
runs in `fit.prepare`, before the run directory exists: beyond what the machine has
(available memory; free space under `output.root`) it raises a ConfigError with the
estimate, the limit and the setting to change; above `WARN_FRACTION` of it, it returns
a warning with the same numbers.

The estimate counts float64 values: draws x chains x (every parameter including the
group coefficients, the sampler's internal variables, sample statistics), the pointwise
log-likelihood and posterior predictive draws after their caps (`hbreg.models.pointwise`,
`output.pointwise_limit`). Peak memory is `MEMORY_COPIES` times the posterior's values
(the sampler's trace, the completed posterior, summary temporaries and `idata.nc`
serialized in memory exist at once), plus `POINTWISE_COPIES` times the pointwise draws,
plus the process's baseline. Calibrated with `/usr/bin/time -v hbreg fit
configs/radon_hier.yaml --set output.plots=[] --set sampler.draws=D` (85 groups, 175
parameters, 4 chains): D = 2,000 / 20,000 / 40,000 gave a peak RSS of 788 / 951 /
1,306 MB and run directories of 71 / 115 / 226 MiB; the estimate says 0.84 / 1.1 / 1.6 GB
and 74 / 121 / 238 MB (memory on the safe side, disk within 5%).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hbreg.config import Config, parameter_names
from hbreg.errors import ConfigError
from hbreg.terminal import format_bytes

__all__ = ["ResourceEstimate", "available_memory", "check_resources", "estimate_resources"]

VALUE_BYTES = 8  # float64
SAMPLE_STATS = 8  # diverging, energy, tree_depth, ... per draw (hbreg.inference)
# Peak RSS = BASELINE + MEMORY_COPIES x (posterior + sampler) + POINTWISE_COPIES x pointwise.
# Measured (module docstring): 3.2 copies of the posterior, 2.6 of the pointwise draws, a
# baseline of 600 MB with PyMC, PyTensor, nutpie and numba loaded; rounded up.
BASELINE_BYTES = 600_000_000
MEMORY_COPIES = 4
POINTWISE_COPIES = 3
PLOT_BYTES = 300_000  # one PNG at 100 dpi, measured 40-250 KB
WARN_FRACTION = 0.5


@dataclass(frozen=True)
class ResourceEstimate:
    """Bytes a run will use against what the machine has (None where it cannot be read)."""

    memory: int
    disk: int
    memory_available: int | None
    disk_free: int | None
    disk_where: Path
    parts: dict[str, int] = field(default_factory=dict)  # bytes by what holds them
    settings: str = ""  # the settings that size the run, for messages

    def describe(self) -> str:
        """One line for `hbreg validate`: memory and disk against what is there."""
        memory = f"memory ~{format_bytes(self.memory)}"
        if self.memory_available is not None:
            memory += f" of {format_bytes(self.memory_available)} available"
        disk = f"disk ~{format_bytes(self.disk)}"
        if self.disk_free is not None:
            disk += f" of {format_bytes(self.disk_free)} free in '{self.disk_where}'"
        return f"{memory}; {disk} ({self.settings})"


def estimate_resources(config: Config, data, *, parameterization: str) -> ResourceEstimate:
    """Estimate the memory and disk a fit of `config` on `data` (a ModelData) will use."""
    from hbreg.models.pointwise import PPC_DRAWS

    sampler = config.sampler
    samples = sampler.chains * sampler.draws
    pooled = config.model.pooling == "pooled"
    scalars = len(parameter_names(config))
    varying = 0 if pooled else len(data.varying)
    group_values = varying * data.n_groups
    # internal: *_offset per group value (non-centered), *_signed per scale (marginal)
    internal = group_values if parameterization == "noncentered" else varying
    n_obs = len(data.y)
    limit = config.output.pointwise_limit
    loglik = samples * n_obs if samples * n_obs <= limit else 0
    ppc_total = min(PPC_DRAWS, limit // max(1, n_obs))
    ppc_draws = sampler.chains * max(1, min(sampler.draws, ppc_total // sampler.chains))
    values = {
        "posterior": samples * (scalars + group_values),
        "sampler": samples * (scalars + internal + SAMPLE_STATS),
        "log_likelihood": loglik,
        "posterior_predictive": ppc_draws * n_obs,
        "data": n_obs * (len(data.coef_names) + 2),
    }
    parts = {k: v * VALUE_BYTES for k, v in values.items()}
    memory = (
        BASELINE_BYTES
        + MEMORY_COPIES * (parts["posterior"] + parts["sampler"])
        + POINTWISE_COPIES * (parts["log_likelihood"] + parts["posterior_predictive"])
        + parts["data"]
    )
    summary_bytes = 250 * (scalars + group_values)
    disk = (
        parts["posterior"]
        + samples * SAMPLE_STATS * VALUE_BYTES
        + parts["log_likelihood"]
        + parts["posterior_predictive"]
        + parts["data"]
        + summary_bytes
        + PLOT_BYTES * len(config.output.plots)
    )
    where = _existing_parent(Path(config.output.root))
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        free = None
    settings = (
        f"{sampler.chains} chains x {sampler.draws:,} draws x "
        f"{scalars + group_values:,} parameters, {n_obs:,} observations"
    )
    return ResourceEstimate(
        memory=int(memory),
        disk=int(disk),
        memory_available=available_memory(),
        disk_free=free,
        disk_where=where,
        parts=parts,
        settings=settings,
    )


def check_resources(estimate: ResourceEstimate) -> list[str]:
    """Raise ConfigError if the run cannot fit the machine; return warnings if it nearly does."""
    problems, warnings = [], []
    for what, need, have, where in (
        ("memory", estimate.memory, estimate.memory_available, "available"),
        ("disk", estimate.disk, estimate.disk_free, f"free in '{estimate.disk_where}'"),
    ):
        if have is None:
            continue
        text = (
            f"the run needs about {format_bytes(need)} of {what} "
            f"({estimate.settings}) and {format_bytes(have)} is {where}; "
            f"{_what_to_change(estimate, what)}"
        )
        if need > have:
            problems.append(text)
        elif need > WARN_FRACTION * have:
            warnings.append(text.replace("the run needs", "close to the limit: the run needs"))
    if problems:
        raise ConfigError("; ".join(problems))
    return warnings


def _what_to_change(estimate: ResourceEstimate, what: str) -> str:
    parts = estimate.parts
    pointwise = parts["log_likelihood"] + parts["posterior_predictive"]
    advice = "lower sampler.draws or sampler.chains"
    if pointwise > parts["posterior"] + parts["sampler"]:
        advice = "lower output.pointwise_limit (or sampler.draws)"
    if what == "disk":
        advice += ", or set output.root to a disk with more space"
    elif (estimate.memory_available or 0) < BASELINE_BYTES:
        advice = f"free memory: hbreg and its libraries alone take {format_bytes(BASELINE_BYTES)}"
    return advice


def available_memory() -> int | None:
    """Memory this process can still use: MemAvailable, capped by a cgroup (container) limit."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    if not found:
        try:  # macOS and other systems without /proc
            import os

            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            return None
    return max(0, min(found))


def _existing_parent(path: Path) -> Path:
    """The nearest directory of `path` (or above it) that exists: the disk it will go on."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or ".")
