"""Simulation configs: the schema of a simulation file and its checks.

A simulation file says how to generate data (groups, rows per group, predictors and
the truth: population hyperparameters, explicit per-group coefficients, or draws
from an experiment's priors for simulation-based calibration) and which experiments
to fit to it; each experiment's sections are those of `hbreg fit`. Reading the YAML,
`--set` overrides and the error text come from `hbreg.config.load`, the one copy
every command shares, so a value given with `--set` means the same here as in `fit`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Discriminator, Field, Tag

from hbreg.config import (
    PLOT_KINDS,
    Config,
    DiagnosticsConfig,
    ModelConfig,
    PriorsConfig,
    SamplerConfig,
    apply_overrides,
    read_yaml_mapping,
    validate_mapping,
)
from hbreg.config.schema import _FamilySection, _Section
from hbreg.errors import ConfigError
from hbreg.families import FAMILIES, LINKS
from hbreg.names import INTERCEPT, RESIDUAL_SD

__all__ = [
    "CoefficientTruth",
    "ExperimentConfig",
    "HierarchicalTruth",
    "SimulationConfig",
    "dump_simulation",
    "fit_config",
    "load_simulation",
    "parse_simulation",
]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


TRIALS_COLUMN = "trials"  # the binomial trials column of simulated data


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


def _predictor_kind(value: Any) -> str | None:
    dist = value.get("dist") if isinstance(value, dict) else getattr(value, "dist", None)
    return dist if dist in ("normal", "bernoulli", "uniform") else None


# a callable discriminator: the shared sections validate every field `before`, which
# pydantic does not allow on a `Field(discriminator=...)` tag
Predictor = Annotated[
    Annotated[NormalPredictor, Tag("normal")]
    | Annotated[BernoulliPredictor, Tag("bernoulli")]
    | Annotated[UniformPredictor, Tag("uniform")],
    Discriminator(
        _predictor_kind,
        custom_error_type="predictor",
        custom_error_message="a predictor needs dist: normal, bernoulli or uniform",
    ),
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


class _FamilyTruth(_Section):
    """The outcome family's own parameters, as the family needs them (`hbreg.families`)."""

    sigma: float | None = Field(None, gt=0)  # gaussian, student_t: residual sd
    nu: float | None = Field(None, gt=0)  # student_t: degrees of freedom
    alpha: float | None = Field(None, gt=0)  # negative_binomial: overdispersion


class HierarchicalTruth(_FamilyTruth):
    """Group coefficients ~ Normal(mu[coef], group_sd[coef]), plus the family's parameters."""

    mu: dict[str, float]
    group_sd: dict[str, Annotated[float, Field(ge=0)]] = {}


class CoefficientTruth(_FamilyTruth):
    """Explicit coefficient vectors per group (intercept first when there is one)."""

    coefficients: dict[str, list[float]]


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


class GenerateConfig(_FamilySection):
    """How the synthetic rows are made."""

    groups: Annotated[int, Field(ge=1)] | list[str] | None = None
    group_column: str = Field("group", pattern=_IDENT)
    outcome: str = Field("y", pattern=_IDENT)
    rows: Rows = 100
    intercept: bool = True
    predictors: list[Predictor] = []
    family: Literal[tuple(FAMILIES)] = "gaussian"  # the outcome's distribution
    link: Literal[LINKS] | None = None  # None: the family's usual link
    trials: int = Field(10, ge=1)  # binomial: trials per row, in the column `trials`
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
    """Where the simulation directory goes and what each fit keeps.

    `plots` are the fits' own figures; `pointwise` their log-likelihood and posterior
    predictive draws (`idata.nc`, for `hbreg compare`'s LOO). Recovery needs neither:
    ``auto`` keeps both for a single replicate and leaves them out of many, where they
    were two thirds of each fit's report time and 9 MB of each radon-like fit's files.
    """

    root: str = "outputs"
    plots: Literal["auto"] | bool = "auto"
    pointwise: Literal["auto"] | bool = "auto"


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
        return ([INTERCEPT] if gen.intercept else []) + [p.name for p in gen.predictors]

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
    raw = apply_overrides(read_yaml_mapping(path), list(overrides), schema=SimulationConfig)
    if replicates is not None:
        raw["replicates"] = replicates
    spec = parse_simulation(raw, source=str(path))
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": int(np.random.SeedSequence().entropy % 2**32)})
    return spec


def parse_simulation(raw: dict, *, source: str = "simulation config") -> SimulationConfig:
    """Validate a raw mapping; every problem, schema or consistency, in one ConfigError."""
    spec = validate_mapping(raw, SimulationConfig, source=f"simulation config '{source}'")
    problems = _consistency_problems(spec)
    if problems:
        raise ConfigError(f"invalid simulation config '{source}':\n  " + "\n  ".join(problems))
    return _resolved(spec)


def _resolved(spec: SimulationConfig) -> SimulationConfig:
    """Fill each experiment's model section from the generator, so the dump says it all.

    `model.intercept` follows `generate.intercept` and `model.family` (with its link)
    `generate.family` unless the experiment sets them; `model.pooling` is the experiment's
    `pooling`.
    """
    experiments = []
    for exp in spec.experiments:
        model = exp.model.model_dump()
        model["pooling"] = exp.pooling
        if "intercept" not in exp.model.model_fields_set:
            model["intercept"] = spec.generate.intercept
        if "family" not in exp.model.model_fields_set:  # fit the family the data come from
            model.update(family=spec.generate.family, link=spec.generate.link)
        experiments.append(exp.model_copy(update={"model": ModelConfig.model_validate(model)}))
    return spec.model_copy(update={"experiments": experiments})


def _consistency_problems(spec: SimulationConfig) -> list[str]:
    gen = spec.generate
    problems = []
    coefs = spec.coefficient_names()
    names = [p.name for p in gen.predictors]
    reserved = {INTERCEPT, RESIDUAL_SD, gen.outcome, gen.group_column}
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


def _family_truth_problems(gen) -> list[str]:
    """The truth gives exactly the family's own parameters."""
    if not isinstance(gen.truth, _FamilyTruth):
        return []
    family = FAMILIES[gen.family]
    needed = ([RESIDUAL_SD] if family.has_sigma else []) + list(family.parameters)
    given = [k for k in ("sigma", "nu", "alpha") if getattr(gen.truth, k) is not None]
    problems = []
    missing = [k for k in needed if k not in given]
    if missing:
        problems.append(f"generate -> truth: family '{gen.family}' needs {missing}")
    extra = [k for k in given if k not in needed]
    if extra:
        problems.append(f"generate -> truth: family '{gen.family}' has no parameter {extra}")
    return problems


def _truth_problems(spec: SimulationConfig, coefs: list[str]) -> list[str]:
    gen, truth = spec.generate, spec.generate.truth
    problems = _family_truth_problems(gen)
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
    pointwise: bool = True,
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
            "trials": TRIALS_COLUMN if model["family"] == "binomial" else None,
        },
        "model": model,
        "priors": exp.priors.model_dump(),
        "sampler": {**exp.sampler.model_dump(), "seed": seed},
        "diagnostics": exp.diagnostics.model_dump(),
        "output": {
            "root": root,
            "plots": list(PLOT_KINDS) if plots else [],
            **({} if pointwise else {"pointwise_limit": 0}),
        },
    }
    return validate_mapping(raw, Config, source="experiment")


def dump_simulation(spec: SimulationConfig) -> str:
    """The resolved simulation config as YAML (seed and replicates included)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
