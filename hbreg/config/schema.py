"""The experiment schema: pydantic models with every default, and the names they imply.

Loading, `--set` overrides and error text live in `hbreg.config.load`, shared by every
command; this module only says what a valid experiment is.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hbreg.config.formula import FormulaError, outcome_of, parse_formula
from hbreg.config.priors import PriorProblem, check_correlation_prior, check_prior
from hbreg.families import FAMILIES, LINKS, link_of
from hbreg.names import (
    RESIDUAL_SD,
    clashes,
    group_predictor_effect,
    group_sd,
    population_mean,
)
from hbreg.terminal import format_bytes

__all__ = [
    "PLOT_KINDS",
    "Config",
    "FORMULA_ROLE_KEYS",
    "coefficient_names",
    "correlation_prior",
    "name_clashes",
    "role_problems",
    "parameter_names",
    "prior_for",
    "prior_is_stated",
    "prior_key",
    "varying_names",
    "varying_problem",
]

PLOT_KINDS = ("posterior", "trace", "forest", "ppc", "energy", "pair")
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def _number_annotation(annotation) -> bool:
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is typing.Annotated:  # Annotated[int, Field(ge=1)]
        return _number_annotation(typing.get_args(annotation)[0])
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_number_annotation(a) for a in typing.get_args(annotation))
    return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value, info):
        # pydantic reads `draws: yes` as 1; a number written as true/false is a mistake
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and _number_annotation(annotation):
            raise ValueError(f"must be a number, got {str(value).lower()}")
        return value


class _FamilySection(_Section):
    """A section with `family` and `link` fields: no link stated means the family's usual one."""

    @model_validator(mode="after")
    def _link_of_the_family(self):
        link = link_of(self.family, self.link)
        if link != self.link:  # assigning validates again: only when it changes
            self.link = link
        return self


class DataConfig(_Section):
    """Where the rows come from and which columns play which role."""

    dataset: str | None = None
    path: str | None = None
    outcome: str
    predictors: list[str] = []
    group: str | None = None
    group_predictors: list[str] = []
    trials: str | None = None  # binomial: the column with each row's number of trials
    offset: str | None = None  # a column added to the linear predictor (e.g. log exposure)
    weights: str | None = None  # likelihood weights: each row's log density times its weight
    missing: Literal["error", "drop"] = "error"
    reference_levels: dict[str, str | int | float | bool] = {}

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (a built-in name) or data.path")
        used = [self.outcome, *self.predictors, *self.group_predictors]
        used += [c for c in (self.group, self.trials, self.offset, self.weights) if c is not None]
        repeated = sorted({c for c in used if used.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} used in more than one role")
        return self


class ModelConfig(_FamilySection):
    """Pooling strategy, which coefficients vary by group, and how to sample them."""

    pooling: Literal["pooled", "unpooled", "hierarchical"] = "hierarchical"
    intercept: bool = True
    varying: list[str] | None = None
    group_predictors_for: list[str] = ["intercept"]
    parameterization: Literal["auto", "marginal", "centered", "noncentered"] = "auto"
    family: Literal[tuple(FAMILIES)] = "gaussian"
    link: Literal[LINKS] | None = None  # None: the family's usual link, filled in on load
    correlated: bool = False
    standardize: bool = False  # sample on centred, scaled columns (hbreg.models.standardize)
    formula: str | None = None

    @field_validator("formula")
    @classmethod
    def _parsable(cls, text):
        if text is not None:
            try:
                parse_formula(text)
            except FormulaError as exc:
                raise ValueError(str(exc)) from None
        return text


# Keys a formula replaces (`model.formula` and these are one or the other).
FORMULA_ROLE_KEYS = {
    "data": ("outcome", "predictors", "group", "group_predictors"),
    "model": ("pooling", "intercept", "varying", "group_predictors_for", "correlated"),
}


def _prior(**spec) -> dict:
    return Field(default_factory=lambda: dict(spec))


class PriorsConfig(_Section):
    """Default priors per role, and overrides per parameter name."""

    coefficient: dict[str, Any] = _prior(dist="Normal", mu=0, sigma=10)
    group_sd: dict[str, Any] = _prior(dist="HalfCauchy", beta=5)
    sigma: dict[str, Any] = _prior(dist="HalfCauchy", beta=5)
    group_corr: dict[str, Any] = _prior(dist="LKJ", eta=2)
    group_corr_by: dict[str, dict[str, Any]] = {}  # grouping factor -> its own LKJ prior
    overrides: dict[str, dict[str, Any]] = {}

    @field_validator("coefficient")
    @classmethod
    def _real_prior(cls, spec):
        return _checked(spec, positive=False)

    @field_validator("group_sd", "sigma")
    @classmethod
    def _scale_prior(cls, spec):
        return _checked(spec, positive=True)

    @field_validator("group_corr")
    @classmethod
    def _correlation_prior(cls, spec):
        try:
            check_correlation_prior(spec)
        except PriorProblem as exc:
            raise ValueError(str(exc)) from None
        return spec

    @field_validator("group_corr_by")
    @classmethod
    def _correlation_priors(cls, specs):
        for factor, spec in specs.items():
            try:
                check_correlation_prior(spec)
            except PriorProblem as exc:
                raise ValueError(f"{factor}: {exc}") from None
        return specs


def _checked(spec: dict, *, positive: bool) -> dict:
    try:
        check_prior(spec, positive=positive)
    except PriorProblem as exc:
        raise ValueError(str(exc)) from None
    return spec


# Values above these can only be typos; each bound comes with the reason given to the user.
# What merely may not fit (memory, disk) is estimated per run by `hbreg.resources` instead.
SAMPLER_BOUNDS = {
    "draws": (
        1_000_000,
        "a few thousand draws per chain already give an ESS in the thousands; "
        "more than a million is almost surely a typo",
    ),
    "tune": (
        100_000,
        "NUTS adapts its step size and mass matrix within a few thousand steps; "
        "more than 100,000 tuning steps never help",
    ),
    "chains": (
        64,
        "4 chains are the convention for r_hat; more than 64 cannot run in parallel "
        "on any ordinary machine",
    ),
    "max_tree_depth": (
        20,
        "depth 20 is already 1,048,576 gradient evaluations per draw; a posterior that needs "
        "more wants reparameterizing, not deeper trees",
    ),
}


class SamplerConfig(_Section):
    """NUTS settings; `seed` is drawn once and saved when not given, so runs can be repeated."""

    draws: int = Field(1000, ge=1)
    tune: int = Field(1000, ge=0)
    chains: int = Field(4, ge=1)
    cores: int | None = Field(None, ge=1)
    target_accept: float = Field(0.8, gt=0, lt=1)
    max_tree_depth: int = Field(10, ge=1)
    seed: int | None = Field(None, ge=0, lt=2**32)
    backend: Literal["auto", "nutpie", "pymc", "numpyro"] = "auto"
    prior_only: bool = False  # draw from the priors instead of the posterior (--prior-only)

    @field_validator(*SAMPLER_BOUNDS, mode="after")
    @classmethod
    def _below_typo_bound(cls, value: int, info):
        bound, reason = SAMPLER_BOUNDS[info.field_name]
        if value > bound:
            size = ""
            if info.field_name == "draws":  # what storing them takes, whatever the data
                size = f" ({format_bytes(value * 8)} per parameter and chain)"
            raise ValueError(
                f"{value:,} is above the limit of {bound:,}{size}: {reason}; "
                f"set sampler.{info.field_name} to at most {bound:,}"
            )
        return value


class DiagnosticsConfig(_Section):
    """Thresholds for the pass/fail verdict (and `--strict`)."""

    max_r_hat: float = Field(1.01, gt=1)
    min_ess_bulk: float = Field(400, ge=0)
    min_ess_tail: float = Field(400, ge=0)
    max_divergences: int = Field(0, ge=0)
    min_bfmi: float = Field(0.3, ge=0)
    max_tree_depth_fraction: float = Field(0.01, ge=0, le=1)


class OutputConfig(_Section):
    """Where runs go and what is written."""

    root: str = "outputs"
    plots: list[Literal[PLOT_KINDS]] = list(PLOT_KINDS)
    pointwise_limit: int = Field(25_000_000, ge=0)


class Config(_Section):
    """One experiment: the whole YAML file."""

    name: str = Field(max_length=100)
    data: DataConfig
    model: ModelConfig = ModelConfig()
    priors: PriorsConfig = PriorsConfig()
    sampler: SamplerConfig = SamplerConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    output: OutputConfig = OutputConfig()

    @field_validator("name")
    @classmethod
    def _name_is_a_directory_name(cls, name):
        if not re.fullmatch(_NAME_PATTERN, name):
            raise ValueError(
                f"'{name}' must start with a letter or digit and hold only letters, digits, "
                "'_', '.' and '-' (it names the run directory)"
            )
        return name

    @model_validator(mode="before")
    @classmethod
    def _formula_or_roles(cls, raw):
        """A formula names the outcome, predictors, groups and varying terms: roles clash."""
        model, data = (raw.get("model"), raw.get("data")) if isinstance(raw, dict) else (0, 0)
        if not isinstance(model, dict) or not isinstance(model.get("formula"), str):
            return raw
        if not isinstance(data, dict):
            return raw
        given = [
            f"{section}.{key}"
            for section, keys in FORMULA_ROLE_KEYS.items()
            for key in keys
            if key in {"data": data, "model": model}[section]
        ]
        if given:
            raise ValueError(
                f"model.formula clashes with {', '.join(given)}: a config gives either a formula "
                "or the roles (data.outcome, data.predictors, data.group, model.varying, ...); "
                "remove one"
            )
        try:
            outcome, trials = outcome_of(model["formula"].partition("~")[0])
        except FormulaError:
            outcome, trials = "?", None  # the formula's own check says what is wrong
        if trials is not None and data.get("trials") not in (None, trials):
            raise ValueError(
                f"model.formula reads the trials from '{trials}' but data.trials is "
                f"'{data['trials']}'; give them once, in the formula"
            )
        filled = {"outcome": outcome or "?", **({"trials": trials} if trials else {})}
        return {**raw, "data": {**data, **filled}}

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo):
        if self.model.formula is None and self.data.reference_levels:
            raise ValueError("data.reference_levels applies to model.formula configs")
        problems = _family_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        if self.model.formula is None:
            deferred = (info.context or {}).get("varying_after_data", False)
            problems = role_problems(self, check_varying=not deferred)
            if problems:
                raise ValueError("; ".join(problems))
        return self


def role_problems(config: Config, *, check_varying: bool = True) -> list[str]:
    """Everything wrong with the roles of a config (checked after data for formula configs).

    `check_varying=False` leaves `model.varying` to `varying_problem`, run once the data's
    columns are known.
    """
    coefs = coefficient_names(config)
    if not coefs:
        return ["the model has no coefficients: set model.intercept or data.predictors"]
    if config.model.pooling != "pooled" and config.data.group is None:
        return [f"model.pooling '{config.model.pooling}' needs data.group"]
    problem = varying_problem(config) if check_varying else None
    if problem:
        return [problem]
    if config.model.correlated and (
        config.model.pooling != "hierarchical" or len(varying_names(config)) < 2
    ):
        return [
            "model.correlated needs model.pooling 'hierarchical' and at least two varying "
            f"coefficients (here {config.model.pooling}, varying {varying_names(config)})"
        ]
    if config.data.group_predictors and config.model.pooling != "hierarchical":
        return ["data.group_predictors need model.pooling 'hierarchical'"]
    if config.data.group_predictors:
        varying = varying_names(config)
        bad = [c for c in config.model.group_predictors_for if c not in varying]
        if bad:
            return [
                f"model.group_predictors_for lists {bad}; group predictors shift the means "
                f"of varying coefficients, here {varying}"
            ]
    unknown = [f for f in config.priors.group_corr_by if f != config.data.group]
    if unknown:
        return [
            f"priors.group_corr_by: no grouping factor {unknown}; the model's factor is "
            f"'{config.data.group}'"
        ]
    problems = name_clashes(config)
    if problems:
        return problems
    names = parameter_names(config)
    for pname, spec in config.priors.overrides.items():
        if pname not in names:
            close = difflib.get_close_matches(pname, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            problems.append(
                f"priors.overrides: no parameter '{pname}'.{hint} Parameters: {', '.join(names)}"
            )
            continue
        try:
            check_prior(spec, positive=names[pname] in ("scale", "family"))
        except PriorProblem as exc:
            problems.append(f"priors.overrides -> {pname}: {exc}")
    return problems


def varying_problem(config: Config) -> str | None:
    """What is wrong with `model.varying` (names that are not coefficients), or None.

    `load_config` defers this check until the data's columns have been found (see
    `hbreg.fit.prepare`): a misspelled predictor is then reported as the missing column it
    is, not as a varying list that does not match it.
    """
    coefs = coefficient_names(config)
    bad = [c for c in config.model.varying or [] if c not in coefs]
    return f"model.varying lists {bad}; coefficients are {coefs}" if bad else None


def coefficient_names(config: Config) -> list[str]:
    """Regression coefficients in design-matrix order: `intercept` first, then predictors."""
    return (["intercept"] if config.model.intercept else []) + list(config.data.predictors)


def varying_names(config: Config) -> list[str]:
    """Coefficients that take one value per group (none for pooled models)."""
    if config.model.pooling == "pooled":
        return []
    coefs = coefficient_names(config)
    chosen = config.model.varying
    return coefs if chosen is None else [c for c in coefs if c in chosen]


def parameter_names(config: Config) -> dict[str, str]:
    """Sampled parameter names -> role ('coefficient', 'scale' or 'family'), as in the posterior."""
    varying = varying_names(config)
    names: dict[str, str] = {}
    for coef in coefficient_names(config):
        if coef in varying and config.model.pooling == "hierarchical":
            names[population_mean(coef)] = "coefficient"
            names[group_sd(coef)] = "scale"
            for gp in _group_predictors_of(config, coef):
                names[group_predictor_effect(coef, gp)] = "coefficient"
        else:
            names[coef] = "coefficient"
    family = FAMILIES[config.model.family]
    if family.has_sigma:
        names[RESIDUAL_SD] = "scale"
    for name in family.parameters:
        names[name] = "family"  # positive, with the family's default prior
    return names


def _group_predictors_of(config: Config, coef: str) -> list[str]:
    if coef in config.model.group_predictors_for:
        return list(config.data.group_predictors)
    return []


def _family_problems(config: Config) -> list[str]:
    """Columns a family needs or cannot use, and parameterizations it cannot have."""
    family, data, model = config.model.family, config.data, config.model
    problems = []
    if family == "binomial" and data.trials is None:
        problems.append("model.family 'binomial' needs data.trials: the column of trials per row")
    if family != "binomial" and data.trials is not None:
        problems.append(f"data.trials is for model.family 'binomial', not '{family}'")
    if model.parameterization == "marginal" and (family != "gaussian" or data.weights):
        why = f"family '{family}'" if family != "gaussian" else "likelihood weights"
        problems.append(
            f"model.parameterization 'marginal' integrates the group coefficients out in closed "
            f"form, which only a Gaussian likelihood without weights allows (here: {why}); use "
            "'auto', 'noncentered' or 'centered'"
        )
    return problems


def family_parameters(config: Config) -> list[str]:
    """The outcome family's own parameters: `sigma` (gaussian, student_t), `nu`, `alpha`."""
    family = FAMILIES[config.model.family]
    return ([RESIDUAL_SD] if family.has_sigma else []) + list(family.parameters)


def name_clashes(config: Config) -> list[str]:
    """Columns whose names would collide with a posterior name (see `hbreg.names`)."""
    hierarchical = varying_names(config) if config.model.pooling == "hierarchical" else []
    return clashes(
        outcome=config.data.outcome,
        intercept=config.model.intercept,
        predictors=list(config.data.predictors),
        group=config.data.group,
        hierarchical=hierarchical,
        group_predictors={c: _group_predictors_of(config, c) for c in hierarchical},
        correlated=config.model.correlated,
        family_parameters=family_parameters(config),
    )


def correlation_prior(config: Config, factor: str | None) -> dict:
    """The LKJ prior of one grouping factor's correlations: its own, else `priors.group_corr`."""
    return config.priors.group_corr_by.get(factor, config.priors.group_corr)


def prior_for(config: Config, name: str) -> dict:
    """The prior of parameter `name`: its override, else the default for its role."""
    if name in config.priors.overrides:
        return config.priors.overrides[name]
    field = _role_field(config, name)
    if field is None:
        return dict(FAMILIES[config.model.family].parameters[name])
    return getattr(config.priors, field)


def prior_key(config: Config, name: str) -> str:
    """Where the prior of `name` is set: `priors.overrides.<name>` or its role's default."""
    if name in config.priors.overrides:
        return f"priors.overrides.{name}"
    field = _role_field(config, name)
    return f"priors.{field}" if field else f"the {config.model.family} family's default"


def prior_is_stated(config: Config, name: str) -> bool:
    """Whether the config states the prior of `name` rather than leaving it to hbreg.

    Stated: an override, or a role default written in the file or with `--set`
    (pydantic's `model_fields_set`).
    """
    if name in config.priors.overrides:
        return True
    field = _role_field(config, name)
    return field is not None and field in config.priors.model_fields_set


def _role_field(config: Config, name: str) -> str | None:
    if name == RESIDUAL_SD:
        return "sigma"
    role = parameter_names(config)[name]
    if role == "family":
        return None
    return "group_sd" if role == "scale" else "coefficient"
