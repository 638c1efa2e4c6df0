"""`hbreg simulate`: data with known parameters, fitted by several experiments, N times over.

A simulation config says how to generate data (groups, rows per group, predictors
and the truth: population hyperparameters, explicit per-group coefficients, or
draws from an experiment's priors for simulation-based calibration) and which
experiments to fit to it. Every replicate is fully determined by its own seed,
spawned from the root seed with `numpy.random.SeedSequence`, so its data, its fits
and its recovery numbers are the same whichever executor ran it (in-process, a
local process pool, or a Dask cluster).

Workers never write into the simulation directory: each fits into a private
temporary folder and sends back the data, the truth, the recovery numbers and
its fit run directories as tar archives; the client writes them. The simulation
directory is therefore created atomically like every run, and a Dask cluster
needs no shared file system.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from hbreg.config import (
    PLOT_KINDS,
    Config,
    DiagnosticsConfig,
    ModelConfig,
    PriorsConfig,
    SamplerConfig,
    parameter_names,
    prior_for,
    read_yaml_mapping,
    varying_names,
)
from hbreg.config.load import describe_error
from hbreg.errors import ConfigError, SamplingError
from hbreg.runs import RunDirectory
from hbreg.simulate.recovery import (
    SimulationResult,
    assemble_results,
    recover,
    render_recovery,
    truth_for,
)

__all__ = [
    "SimulationConfig",
    "generate_data",
    "load_simulation",
    "parse_simulation",
    "render_recovery",
    "replicate_seeds",
    "run_simulation",
]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
EXECUTORS = ("local", "dask")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- schema


class NormalPredictor(_Section):
    """x ~ Normal(mu, sigma), drawn per row."""

    name: str = Field(pattern=_IDENT)
    dist: Literal["normal"]
    mu: float = 0.0
    sigma: float = Field(1.0, gt=0)


class BernoulliPredictor(_Section):
    """x ~ Bernoulli(p) (0/1), drawn per row."""

    name: str = Field(pattern=_IDENT)
    dist: Literal["bernoulli"]
    p: float = Field(gt=0, lt=1)


class UniformPredictor(_Section):
    """x ~ Uniform(low, high), drawn per row."""

    name: str = Field(pattern=_IDENT)
    dist: Literal["uniform"]
    low: float = 0.0
    high: float = 1.0


Predictor = Annotated[
    NormalPredictor | BernoulliPredictor | UniformPredictor, Field(discriminator="dist")
]


class LogNormalRows(_Section):
    """Skewed group sizes: round(median * exp(sigma * z)), clipped to [min, max]."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(gt=0)
    min: int = Field(1, ge=1)
    max: int | None = Field(None, ge=1)


def _rows_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "count"
    if isinstance(value, list | tuple):
        return "range"
    if isinstance(value, dict | LogNormalRows):
        return "lognormal"
    return None


Rows = Annotated[
    Annotated[int, Field(ge=1), Tag("count")]
    | Annotated[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]], Tag("range")]
    | Annotated[LogNormalRows, Tag("lognormal")],
    Discriminator(
        _rows_kind,
        custom_error_type="rows",
        custom_error_message="rows per group must be a count (1000), a range [min, max] or "
        "{dist: lognormal, median, sigma, min, max}",
    ),
]


class HierarchicalTruth(_Section):
    """Group coefficients ~ Normal(mu[coef], group_sd[coef]); residual sd `sigma`."""

    mu: dict[str, float]
    group_sd: dict[str, Annotated[float, Field(ge=0)]] = {}
    sigma: float = Field(gt=0)


class CoefficientTruth(_Section):
    """Explicit coefficient vectors per group (intercept first when there is one)."""

    coefficients: dict[str, list[float]]
    sigma: float = Field(gt=0)


def _truth_kind(value: Any) -> str | None:
    if value == "prior":
        return "prior"
    if isinstance(value, CoefficientTruth) or (isinstance(value, dict) and "coefficients" in value):
        return "coefficients"
    if isinstance(value, dict | HierarchicalTruth):
        return "hierarchical"
    return None


Truth = Annotated[
    Annotated[HierarchicalTruth, Tag("hierarchical")]
    | Annotated[CoefficientTruth, Tag("coefficients")]
    | Annotated[Literal["prior"], Tag("prior")],
    Discriminator(
        _truth_kind,
        custom_error_type="truth",
        custom_error_message="truth must be `prior`, {mu, group_sd, sigma} (hierarchical) or "
        "{coefficients: {group: [...]}, sigma}",
    ),
]


class GenerateConfig(_Section):
    """How the synthetic rows are made."""

    groups: Annotated[int, Field(ge=1)] | list[str] | None = None
    group_column: str = Field("group", pattern=_IDENT)
    outcome: str = Field("y", pattern=_IDENT)
    rows: Rows = 100
    intercept: bool = True
    predictors: list[Predictor] = []
    truth: Truth
    prior_from: str | None = None


class ExperimentConfig(_Section):
    """One fit of every simulated data set; the sections are those of `hbreg fit`."""

    name: str = Field(pattern=_NAME_PATTERN)
    pooling: Literal["pooled", "unpooled", "hierarchical"]
    model: ModelConfig = ModelConfig()
    priors: PriorsConfig = PriorsConfig()
    sampler: SamplerConfig = SamplerConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()


class SimulationOutputConfig(_Section):
    """Where the simulation directory goes; `plots` are the fits' own plots."""

    root: str = "outputs"
    plots: Literal["auto"] | bool = "auto"


class SimulationConfig(_Section):
    """A whole simulation file."""

    name: str = Field(pattern=_NAME_PATTERN)
    seed: int | None = Field(None, ge=0, lt=2**32)
    replicates: int = Field(1, ge=1, le=100_000)
    workers: int | None = Field(None, ge=1)
    generate: GenerateConfig
    experiments: list[ExperimentConfig] = Field(min_length=1)
    output: SimulationOutputConfig = SimulationOutputConfig()

    def coefficient_names(self) -> list[str]:
        """Coefficients of the generating model, intercept first."""
        gen = self.generate
        return (["intercept"] if gen.intercept else []) + [p.name for p in gen.predictors]

    def group_labels(self) -> list[str]:
        """Group labels: explicit, from the coefficient truth, or g01, g02, ..."""
        gen = self.generate
        if isinstance(gen.groups, list):
            return list(gen.groups)
        if isinstance(gen.truth, CoefficientTruth) and gen.groups is None:
            return list(gen.truth.coefficients)
        count = gen.groups or 1
        width = len(str(count))
        return [f"g{i + 1:0{width}d}" for i in range(count)]

    def truth_kind(self) -> str:
        """`hierarchical`, `coefficients` or `prior`."""
        return _truth_kind(self.generate.truth)

    def prior_experiment(self) -> ExperimentConfig:
        """The experiment whose priors generate the truth under `truth: prior`."""
        wanted = self.generate.prior_from
        return next(e for e in self.experiments if wanted in (None, e.name))


# ----------------------------------------------------------------------------- loading


def load_simulation(
    path: str | Path, overrides: list[str] = (), *, replicates: int | None = None
) -> SimulationConfig:
    """Read, override and validate a simulation file; fill in the seed; raise ConfigError."""
    raw = _apply_overrides(read_yaml_mapping(path), list(overrides))
    if replicates is not None:
        raw["replicates"] = replicates
    spec = parse_simulation(raw, source=str(path))
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": int(np.random.SeedSequence().entropy % 2**32)})
    return spec


def parse_simulation(raw: dict, *, source: str = "simulation config") -> SimulationConfig:
    """Validate a raw mapping; every problem, schema or consistency, in one ConfigError."""
    try:
        spec = SimulationConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(
            f"invalid simulation config '{source}':\n  " + "\n  ".join(lines)
        ) from None
    problems = _consistency_problems(spec)
    if problems:
        raise ConfigError(f"invalid simulation config '{source}':\n  " + "\n  ".join(problems))
    return _resolved(spec)


def _resolved(spec: SimulationConfig) -> SimulationConfig:
    """Fill each experiment's model section from the generator, so the dump says it all.

    `model.intercept` follows `generate.intercept` unless the experiment sets it, and
    `model.pooling` is the experiment's `pooling`.
    """
    experiments = []
    for exp in spec.experiments:
        model = exp.model.model_dump()
        model["pooling"] = exp.pooling
        if "intercept" not in exp.model.model_fields_set:
            model["intercept"] = spec.generate.intercept
        experiments.append(exp.model_copy(update={"model": ModelConfig.model_validate(model)}))
    return spec.model_copy(update={"experiments": experiments})


def _describe(err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "extra_forbidden":
        where = " -> ".join(loc)
        allowed = _fields_at(err["loc"][:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown key '{loc[-1]}'.{hint} Allowed: {', '.join(allowed)}"
    return describe_error(err, Config)


def _fields_at(loc) -> list[str]:
    """Allowed keys at a location; list indices, dict keys and union tags are stepped over."""
    classes: list[type[BaseModel]] = [SimulationConfig]
    for part in loc:
        owners = [c for c in classes if isinstance(part, str) and part in c.model_fields]
        if owners:
            classes = [m for c in owners for m in _models_in(c.model_fields[part].annotation)]
        else:
            tagged = [c for c in classes if _tag_of(c) == part]
            classes = tagged or classes
    return sorted({f for c in classes for f in c.model_fields}, key=lambda f: f)


def _models_in(annotation) -> list[type[BaseModel]]:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _tag_of(cls: type[BaseModel]) -> str | None:
    tags = {
        LogNormalRows: "lognormal",
        HierarchicalTruth: "hierarchical",
        CoefficientTruth: "coefficients",
    }
    if cls in tags:
        return tags[cls]
    dist = cls.model_fields.get("dist")
    return dist.annotation.__args__[0] if dist is not None and cls is not LogNormalRows else None


def _consistency_problems(spec: SimulationConfig) -> list[str]:
    gen = spec.generate
    problems = []
    coefs = spec.coefficient_names()
    names = [p.name for p in gen.predictors]
    reserved = {"intercept", "sigma", gen.outcome, gen.group_column}
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"generate -> predictors: names {repeated} are used more than once")
    clash = sorted(set(names) & reserved)
    if clash:
        problems.append(
            f"generate -> predictors: names {clash} are reserved (intercept, sigma, "
            "the outcome and the group column)"
        )
    if not coefs:
        problems.append("generate: no coefficients; set intercept: true or add predictors")
    if gen.outcome == gen.group_column:
        problems.append("generate -> outcome: must differ from generate -> group_column")
    for i, p in enumerate(gen.predictors):
        if isinstance(p, UniformPredictor) and not p.low < p.high:
            problems.append(f"generate -> predictors -> {i} -> high: must exceed low ({p.low})")
    if isinstance(gen.groups, list) and len(set(gen.groups)) != len(gen.groups):
        problems.append("generate -> groups: labels must be unique")
    if isinstance(gen.rows, tuple) and gen.rows[0] > gen.rows[1]:
        problems.append(f"generate -> rows: range [min, max] has min > max ({list(gen.rows)})")
    if (
        isinstance(gen.rows, LogNormalRows)
        and gen.rows.max is not None
        and gen.rows.max < gen.rows.min
    ):
        problems.append("generate -> rows -> max: must be at least min")
    problems += _truth_problems(spec, coefs)
    exp_names = [e.name for e in spec.experiments]
    repeated = sorted({n for n in exp_names if exp_names.count(n) > 1})
    if repeated:
        problems.append(f"experiments: names {repeated} are used more than once")
    if gen.prior_from is not None and gen.prior_from not in exp_names:
        close = difflib.get_close_matches(gen.prior_from, exp_names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        problems.append(
            f"generate -> prior_from: no experiment '{gen.prior_from}'.{hint} "
            f"Experiments: {', '.join(exp_names)}"
        )
    if spec.truth_kind() == "prior" and not problems:
        exp = spec.prior_experiment()
        if exp.model.model_fields_set & {"intercept"} and exp.model.intercept != gen.intercept:
            problems.append(
                f"generate -> intercept: truth: prior draws from experiment "
                f"'{exp.name}', whose model.intercept is {exp.model.intercept}"
            )
    if not problems:
        for i, exp in enumerate(spec.experiments):
            problems += _experiment_problems(spec, i, exp)
    return problems


def _truth_problems(spec: SimulationConfig, coefs: list[str]) -> list[str]:
    gen, truth, problems = spec.generate, spec.generate.truth, []
    if isinstance(truth, HierarchicalTruth):
        missing = [c for c in coefs if c not in truth.mu]
        if missing:
            problems.append(
                f"generate -> truth -> mu: no value for coefficient(s) {missing}; "
                f"coefficients are {coefs}"
            )
        for key in ("mu", "group_sd"):
            extra = sorted(set(getattr(truth, key)) - set(coefs))
            if extra:
                problems.append(
                    f"generate -> truth -> {key}: unknown coefficient(s) {extra}; "
                    f"coefficients are {coefs}"
                )
    if isinstance(truth, CoefficientTruth):
        for label, vector in truth.coefficients.items():
            if len(vector) != len(coefs):
                problems.append(
                    f"generate -> truth -> coefficients -> {label}: {len(vector)} "
                    f"values, but the coefficients are {coefs}"
                )
        labels = list(truth.coefficients)
        if isinstance(gen.groups, list) and sorted(gen.groups) != sorted(labels):
            problems.append(
                f"generate -> groups: {gen.groups} differ from the groups of "
                f"generate -> truth -> coefficients {labels}"
            )
        if isinstance(gen.groups, int) and gen.groups != len(labels):
            problems.append(
                f"generate -> groups: {gen.groups} groups, but generate -> truth -> "
                f"coefficients gives {len(labels)}"
            )
    elif gen.groups is None:
        problems.append(
            "generate -> groups: required (a count or a list of labels) unless "
            "truth gives coefficients per group"
        )
    if truth == "prior":
        from hbreg.config.priors import DISTRIBUTIONS

        unknown = sorted(set(DISTRIBUTIONS) - set(_PRIOR_DRAWS))
        if unknown:  # a distribution added to priors.py without a sampler here
            problems.append(f"generate -> truth: cannot draw from prior(s) {unknown}")
    return problems


def _experiment_problems(spec: SimulationConfig, index: int, exp: ExperimentConfig) -> list[str]:
    where = f"experiments -> {index}"
    problems = []
    if "pooling" in exp.model.model_fields_set and exp.model.pooling != exp.pooling:
        problems.append(
            f"{where} -> model -> pooling: '{exp.model.pooling}' conflicts with "
            f"{where} -> pooling '{exp.pooling}'; give it once"
        )
    if exp.sampler.seed is not None:
        problems.append(
            f"{where} -> sampler -> seed: fits are seeded from the simulation's "
            "`seed` (one per replicate and experiment); remove it"
        )
    if exp.pooling != "pooled" and len(spec.group_labels()) < 2:
        problems.append(
            f"{where}: {exp.pooling} models need at least 2 groups (generate -> groups)"
        )
    try:
        fit_config(spec, exp, data_path="data.parquet", root="fits", seed=0, plots=False)
    except ConfigError as exc:
        lines = str(exc).splitlines()[1:]
        problems += [
            f"{where} ({exp.name}) -> {line.strip().removeprefix('config: ')}" for line in lines
        ]
    return problems


def fit_config(
    spec: SimulationConfig,
    exp: ExperimentConfig,
    *,
    data_path: str,
    root: str,
    seed: int,
    plots: bool,
) -> Config:
    """The `hbreg fit` config of one experiment on one simulated data set."""
    gen = spec.generate
    model = _resolved(spec.model_copy(update={"experiments": [exp]})).experiments[0].model
    model = model.model_dump()
    raw = {
        "name": exp.name,
        "data": {
            "path": data_path,
            "outcome": gen.outcome,
            "predictors": [p.name for p in gen.predictors],
            "group": None if exp.pooling == "pooled" else gen.group_column,
        },
        "model": model,
        "priors": exp.priors.model_dump(),
        "sampler": {**exp.sampler.model_dump(), "seed": seed},
        "diagnostics": exp.diagnostics.model_dump(),
        "output": {"root": root, "plots": list(PLOT_KINDS) if plots else []},
    }
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(err, Config) for err in exc.errors()]
        raise ConfigError("invalid experiment:\n  " + "\n  ".join(lines)) from None


def _apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b=c` overrides; a list (experiments) is indexed by position or by item name."""
    import copy

    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(re.fullmatch(r"[A-Za-z0-9_][\w.-]*", p) for p in parts):
            raise ConfigError(f"--set '{item}' must look like section.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set '{item}': the value is not valid YAML") from None
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, parts[: depth + 1], item)
        leaf = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, leaf, item)] = value
        else:
            node[leaf] = value
    return result  # unknown keys are reported by validation, with a "did you mean"


def _child(node, part: str, path: list[str], item: str):
    if isinstance(node, list):
        return node[_list_index(node, part, item)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set '{item}': '{'.'.join(path[:-1])}' is not a section")
    child = node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise ConfigError(f"--set '{item}': '{'.'.join(path)}' is not a section")
    return child


def _list_index(node: list, part: str, item: str) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    names = [e.get("name") for e in node if isinstance(e, dict)]
    if part in names:
        return names.index(part)
    raise ConfigError(
        f"--set '{item}': no item '{part}'; give an index below {len(node)} "
        f"or a name ({', '.join(map(str, names))})"
    )


def dump_simulation(spec: SimulationConfig) -> str:
    """The resolved simulation config as YAML (seed and replicates included)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


# ----------------------------------------------------------------------------- generation


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """One seed per replicate: the root seed itself for a single replicate, else spawned.

    A replicate is fully determined by its seed, so `--set seed=S --replicates 1`
    repeats replicate `i` of a larger run whose seed list holds `S` at `i`.
    """
    if replicates == 1:
        return [int(seed)]
    children = np.random.SeedSequence(seed).spawn(replicates)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def _stream_seeds(seed: int, n_experiments: int) -> tuple[np.random.SeedSequence, list[int]]:
    """Data stream and one sampler seed per experiment, all from a replicate's seed."""
    data_ss, *fit_ss = np.random.SeedSequence(seed).spawn(1 + n_experiments)
    # fits use seed, seed + 1 and seed + 2; keep them below 2**32
    return data_ss, [int(s.generate_state(1, dtype=np.uint32)[0]) % (2**32 - 3) for s in fit_ss]


@dataclass
class SimulatedData:
    """One simulated data set and the parameters that made it."""

    frame: Any  # pandas DataFrame
    coefficients: dict[str, dict[str, float]]  # coef -> group label -> value
    sizes: dict[str, int]
    parameters: dict[str, float] = field(default_factory=dict)  # named like the posterior

    def to_dict(self) -> dict:
        """What truth.json holds for this data set."""
        return {"groups": self.sizes, "parameters": self.parameters}


def generate_data(spec: SimulationConfig, *, seed: int) -> SimulatedData:
    """Draw group sizes, the truth, the predictors and the outcome from one seed."""
    import pandas as pd

    gen = spec.generate
    rng = np.random.default_rng(_stream_seeds(seed, len(spec.experiments))[0])
    labels = spec.group_labels()
    coefs = spec.coefficient_names()
    sizes = _group_sizes(gen.rows, len(labels), rng)
    values, hyper = _draw_truth(spec, labels, coefs, rng)  # values: (G, p)
    group = np.repeat(np.arange(len(labels)), sizes)
    n = len(group)
    columns = {}
    design = [np.ones(n)] if gen.intercept else []
    for p in gen.predictors:
        if isinstance(p, NormalPredictor):
            x = rng.normal(p.mu, p.sigma, n)
        elif isinstance(p, BernoulliPredictor):
            x = rng.binomial(1, p.p, n).astype(float)
        else:
            x = rng.uniform(p.low, p.high, n)
        columns[p.name] = x
        design.append(x)
    X = np.column_stack(design)
    sigma = hyper["sigma"]
    y = np.einsum("np,np->n", X, values[group]) + rng.normal(0.0, sigma, n)
    frame = pd.DataFrame(
        {gen.group_column: np.asarray(labels, dtype=object)[group], **columns, gen.outcome: y}
    )
    coefficients = {
        c: {g: float(values[i, j]) for i, g in enumerate(labels)} for j, c in enumerate(coefs)
    }
    parameters = dict(hyper)
    for c in coefs:
        for g in labels:
            parameters[f"{c}[{g}]"] = coefficients[c][g]
    return SimulatedData(
        frame=frame,
        coefficients=coefficients,
        sizes={g: int(s) for g, s in zip(labels, sizes, strict=True)},
        parameters=parameters,
    )


def _group_sizes(rows, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(rows, int):
        return np.full(n_groups, rows)
    if isinstance(rows, tuple):
        return rng.integers(rows[0], rows[1], size=n_groups, endpoint=True)
    sizes = np.round(rows.median * np.exp(rows.sigma * rng.standard_normal(n_groups)))
    return np.clip(sizes, rows.min, rows.max or np.inf).astype(int)


def _draw_truth(spec: SimulationConfig, labels, coefs, rng) -> tuple[np.ndarray, dict]:
    """Group coefficient matrix (G, p) and the named hyperparameters of the generator."""
    truth = spec.generate.truth
    G = len(labels)
    if isinstance(truth, CoefficientTruth):
        values = np.array([truth.coefficients[g] for g in labels], dtype=float)
        return values.reshape(G, len(coefs)), {"sigma": truth.sigma}
    if isinstance(truth, HierarchicalTruth):
        hyper = {}
        for c in coefs:
            hyper[f"mu_{c}"] = truth.mu[c]
            hyper[f"sigma_{c}"] = truth.group_sd.get(c, 0.0)
        hyper["sigma"] = truth.sigma
        z = rng.standard_normal((G, len(coefs)))
        mu = np.array([hyper[f"mu_{c}"] for c in coefs])
        sd = np.array([hyper[f"sigma_{c}"] for c in coefs])
        return mu + sd * z, hyper
    return _draw_from_prior(spec, labels, coefs, rng)


def _draw_from_prior(spec: SimulationConfig, labels, coefs, rng) -> tuple[np.ndarray, dict]:
    """Simulation-based calibration: the generator is the experiment's own prior model."""
    exp = spec.prior_experiment()
    config = fit_config(spec, exp, data_path="data.parquet", root="fits", seed=0, plots=False)
    G = len(labels)
    hyper = {name: float(_draw(prior_for(config, name), rng)) for name in parameter_names(config)}
    varying = varying_names(config)
    values = np.empty((G, len(coefs)))
    for j, c in enumerate(coefs):
        if c not in varying:
            values[:, j] = hyper[c]
        elif exp.pooling == "hierarchical":
            values[:, j] = hyper[f"mu_{c}"] + hyper[f"sigma_{c}"] * rng.standard_normal(G)
        else:  # unpooled: every group draws its own value; there is no population value
            values[:, j] = _draw(prior_for(config, c), rng, G)
            del hyper[c]
    return values, hyper


def _draw(spec: dict, rng: np.random.Generator, size=None):
    params = {k: v for k, v in spec.items() if k != "dist"}
    return _PRIOR_DRAWS[spec["dist"]](rng, size, **params)


# numpy draws with PyMC's parameterizations (rates are rates, scales are scales)
_PRIOR_DRAWS = {
    "Normal": lambda r, n, mu, sigma: r.normal(mu, sigma, n),
    "StudentT": lambda r, n, nu, mu, sigma: mu + sigma * r.standard_t(nu, n),
    "Cauchy": lambda r, n, alpha, beta: alpha + beta * r.standard_cauchy(n),
    "Laplace": lambda r, n, mu, b: r.laplace(mu, b, n),
    "HalfNormal": lambda r, n, sigma: np.abs(r.normal(0.0, sigma, n)),
    "HalfCauchy": lambda r, n, beta: np.abs(beta * r.standard_cauchy(n)),
    "HalfStudentT": lambda r, n, nu, sigma: np.abs(sigma * r.standard_t(nu, n)),
    "Exponential": lambda r, n, lam: r.exponential(1 / lam, n),
    "Gamma": lambda r, n, alpha, beta: r.gamma(alpha, 1 / beta, n),
    "InverseGamma": lambda r, n, alpha, beta: beta / r.gamma(alpha, 1.0, n),
    "LogNormal": lambda r, n, mu, sigma: r.lognormal(mu, sigma, n),
}


# ----------------------------------------------------------------------------- one replicate


@dataclass
class ReplicateOutcome:
    """What a worker sends back for one replicate; plain data, picklable."""

    replicate: int
    seed: int
    truth: dict | None = None
    data: bytes | None = None  # parquet
    rows: list[dict] = field(default_factory=list)  # recovery rows
    fits: dict[str, bytes] = field(default_factory=dict)  # experiment -> tar of its run dir
    fit_dirs: dict[str, str] = field(default_factory=dict)  # experiment -> run dir name
    errors: list[dict] = field(default_factory=list)  # {experiment, error}
    seconds: float = 0.0


def _run_replicate(task: dict, on_fit=None) -> ReplicateOutcome:
    """Generate, fit every experiment and measure recovery; never raises for one bad fit."""
    start = time.perf_counter()
    spec = SimulationConfig.model_validate(task["spec"])
    outcome = ReplicateOutcome(replicate=task["replicate"], seed=task["seed"])
    try:
        sim = generate_data(spec, seed=task["seed"])
        outcome.truth = sim.to_dict()
        buffer = io.BytesIO()
        sim.frame.to_parquet(buffer, index=False)
        outcome.data = buffer.getvalue()
    except Exception as exc:
        outcome.errors.append({"experiment": None, "error": _one_line(exc)})
        outcome.seconds = time.perf_counter() - start
        return outcome
    _, fit_seeds = _stream_seeds(task["seed"], len(spec.experiments))
    with tempfile.TemporaryDirectory(prefix="hbreg-sim-") as work:
        data_file = Path(work) / "data.parquet"
        data_file.write_bytes(outcome.data)
        for exp, fit_seed in zip(spec.experiments, fit_seeds, strict=True):
            try:
                rows, run_path = _fit_experiment(
                    spec, exp, sim, task, fit_seed, Path(work), data_file
                )
                outcome.rows += rows
            except Exception as exc:
                outcome.errors.append({"experiment": exp.name, "error": _one_line(exc)})
                run_path = next(Path(work, "fits").glob(f"*_{exp.name}*"), None)
            if run_path is not None:
                outcome.fits[exp.name] = _archive(run_path)
                outcome.fit_dirs[exp.name] = run_path.name
            if on_fit is not None:
                on_fit()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _fit_experiment(spec, exp, sim, task, fit_seed, work: Path, data_file: Path):
    """Fit one experiment into `work/fits`; return its recovery rows and run directory."""
    import xarray as xr

    from hbreg.data import load_model_data
    from hbreg.fit import fit

    config = fit_config(
        spec,
        exp,
        data_path=task["data_path"],
        root=task["fits_root"],
        seed=fit_seed,
        plots=task["plots"],
    )
    # the recorded paths are relative to the simulation directory (refit from there);
    # the data are read from the worker's copy
    local = config.model_copy(deep=True)
    local.data.path = str(data_file)
    data = load_model_data(local)
    with _no_dask_scheduler():
        result = fit(config, prepared=data, root=work / "fits", command=task["command"])
    tree = xr.open_datatree(result.path / "idata.nc", engine="h5netcdf")
    try:
        posterior = tree["posterior"].to_dataset().load()
    finally:
        tree.close()
    truth = truth_for(sim, config)
    rows = recover(posterior, truth, group_dim=data.group_dim)
    for row in rows:
        row.update(
            experiment=exp.name, pooling=exp.pooling, replicate=task["replicate"], seed=task["seed"]
        )
    return rows, result.path


def _no_dask_scheduler():
    """No Dask scheduler while fitting, so xarray takes a local lock to write netCDF.

    Inside a Dask worker xarray locks the target across the cluster, which fails for
    the in-memory file that `fit` writes.
    """
    import contextlib

    try:
        import dask
    except ImportError:
        return contextlib.nullcontext()
    return dask.config.set(scheduler="synchronous")


def _archive(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ----------------------------------------------------------------------------- executors


def _local_outcomes(tasks: list[dict], workers: int, on_fit):
    """In-process when one worker is asked for, else a process pool (forkserver or spawn)."""
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            yield _run_replicate(task, on_fit=on_fit)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # numba/LLVM state and sampler threads do not survive fork: workers are forked from a
    # clean server process (forkserver; measured a little faster than spawn), else spawned
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context)
    futures = {pool.submit(_run_replicate, task): task for task in tasks}
    try:
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a worker died (BrokenProcessPool, MemoryError, ...)
                yield _lost(futures[future], exc)
    except BaseException:  # interrupted: drop queued replicates, stop the running ones
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    pool.shutdown(wait=True)


def _connect_dask(scheduler: str | None):
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
            f"--scheduler: cannot connect to Dask scheduler '{scheduler}': {_one_line(exc)}"
        ) from None


def _dask_outcomes(client, tasks: list[dict]):
    import distributed

    futures = client.map(
        _run_replicate,
        tasks,
        pure=False,
        key=[f"hbreg-replicate-{t['replicate']}-{t['seed']}-{os.getpid()}" for t in tasks],
    )
    by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            try:
                yield future.result()
            except Exception as exc:  # KilledWorker, hbreg missing on the workers, ...
                yield _lost(by_key[future.key], exc)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.close()


def _lost(task: dict, exc: BaseException) -> ReplicateOutcome:
    return ReplicateOutcome(
        replicate=task["replicate"],
        seed=task["seed"],
        errors=[{"experiment": None, "error": f"worker lost: {_one_line(exc)}"}],
    )


# ----------------------------------------------------------------------------- the run


def run_simulation(
    spec: SimulationConfig,
    *,
    executor: str = "local",
    scheduler: str | None = None,
    console=None,
    command: str | None = None,
) -> SimulationResult:
    """Simulate, fit and measure recovery for every replicate; write the simulation directory.

    Raises ConfigError (exit 2) for a bad executor choice before anything is written,
    and SamplingError (exit 3) when every replicate failed.
    """
    import shlex
    import sys

    from rich.console import Console

    console = console or Console()
    if executor not in EXECUTORS:
        raise ConfigError(
            f"--executor: '{executor}' is not an executor; choose one of {', '.join(EXECUTORS)}"
        )
    if scheduler and executor != "dask":
        raise ConfigError("--scheduler is only used with --executor dask")
    client = _connect_dask(scheduler) if executor == "dask" else None
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": int(np.random.SeedSequence().entropy % 2**32)})
    command = command or shlex.join(["hbreg", *sys.argv[1:]])
    start = time.perf_counter()
    try:
        run = RunDirectory(spec.output.root, spec.name, kind="simulate")
    except BaseException:
        if client is not None:
            client.close()
        raise
    single = spec.replicates == 1
    plots = spec.output.plots if isinstance(spec.output.plots, bool) else single
    seeds = replicate_seeds(spec.seed, spec.replicates)
    tasks = [
        {
            "spec": spec.model_dump(mode="json"),
            "replicate": i,
            "seed": s,
            "plots": plots,
            "command": f"{command} (replicate {i}, seed {s})",
            "data_path": "data.parquet" if single else f"data/rep_{i:03d}.parquet",
            "fits_root": "fits" if single else f"fits/rep_{i:03d}",
        }
        for i, s in enumerate(seeds)
    ]
    manifest = {
        "command": command,
        "seed": spec.seed,
        "replicates": spec.replicates,
        "executor": executor,
        "scheduler": scheduler,
        "experiments": [e.name for e in spec.experiments],
    }
    try:
        run.write_text("config.yaml", dump_simulation(spec))
        outcomes = _collect(spec, tasks, run, executor, client, console)
        result = assemble_results(spec, outcomes, run, seconds=time.perf_counter() - start)
    except BaseException as exc:
        if client is not None:
            client.close()
        run.abandon(exc, **manifest)
        raise
    manifest.update(failures=result.failures, seconds=round(time.perf_counter() - start, 3))
    if result.n_ok == 0:
        first = result.failures[0]
        error = SamplingError(
            f"every replicate failed; replicate {first['replicate']} (seed "
            f"{first['seed']}): {first['error']}"
        )
        run.abandon(error, **manifest)
        raise error
    result.path = run.finish(**manifest)
    return result


def _collect(spec, tasks, run: RunDirectory, executor, client, console) -> list[ReplicateOutcome]:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    n_exp = len(spec.experiments)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("fits"),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    outcomes = []
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"Simulating {spec.name}", total=len(tasks) * n_exp, failed=0)
        fits_done = {"n": 0}

        def on_fit():
            fits_done["n"] += 1
            progress.advance(bar)

        if executor == "dask":
            stream = _dask_outcomes(client, tasks)
        else:
            workers = spec.workers or os.cpu_count() or 1
            stream = _local_outcomes(tasks, workers, on_fit)
        failed = 0
        for outcome in stream:
            _store(run, outcome, single=spec.replicates == 1)
            outcomes.append(outcome)
            for err in outcome.errors:
                failed += 1
                what = f"experiment {err['experiment']}" if err["experiment"] else "replicate"
                console.print(
                    f"[red]replicate {outcome.replicate} (seed {outcome.seed}) failed[/]"
                    f" ({escape(what)}): {escape(err['error'])}",
                    highlight=False,
                )
            done = n_exp * len(outcomes)
            progress.update(bar, completed=max(done, fits_done["n"]), failed=failed)
    return sorted(outcomes, key=lambda o: o.replicate)


def _store(run: RunDirectory, outcome: ReplicateOutcome, *, single: bool) -> None:
    """Write a replicate's data and extract its fit run directories into the simulation."""
    from hbreg.errors import OutputError

    i = outcome.replicate
    data_rel = "data.parquet" if single else f"data/rep_{i:03d}.parquet"
    fits_dir = run.path / ("fits" if single else f"fits/rep_{i:03d}")
    if outcome.data is not None:
        run.write_bytes(data_rel, outcome.data)
    try:
        for archive in outcome.fits.values():
            fits_dir.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
                tar.extractall(fits_dir, filter="data")
    except OSError as exc:
        raise OutputError(f"cannot write replicate {i} into '{run.path}': {exc}") from None
    outcome.data = None
    outcome.fits = {}
