"""The experiment schema: YAML in, one validated `Config` out, every default filled in.

Mistakes are reported all at once, each with its location (`sampler -> draws`), and
unknown keys come with a "did you mean" hint. `--set a.b=c` overrides are applied to
the raw mapping before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hbreg.errors import ConfigError
from hbreg.priors import PriorProblem, check_prior

__all__ = [
    "Config",
    "apply_overrides",
    "coefficient_names",
    "dump_config",
    "load_config",
    "parameter_names",
    "parse_config",
]

MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 100_000  # after YAML aliases are expanded: refuses "billion laughs"
PLOT_KINDS = ("posterior", "trace", "forest", "ppc", "energy", "pair")
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, stricter where a config mistake would otherwise pass silently.

    - a key given twice in one mapping is an error (PyYAML keeps the last one quietly);
    - `1e-3` is a float, as in YAML 1.2 (YAML 1.1 reads it as the string '1e-3').
    """


def _construct_mapping(loader: _Loader, node, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: keys given next to it override it, legitimately
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:
            break  # an unhashable key: SafeConstructor reports it
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key '{key}' appears twice (first at line {first})",
                key_node.start_mark,
            )
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def _number_annotation(annotation) -> bool:
    if annotation in (int, float):
        return True
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


class DataConfig(_Section):
    """Where the rows come from and which columns play which role."""

    dataset: str | None = None
    path: str | None = None
    outcome: str
    predictors: list[str] = []
    group: str | None = None
    group_predictors: list[str] = []
    missing: Literal["error", "drop"] = "error"

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (a built-in name) or data.path")
        used = [self.outcome, *self.predictors, *self.group_predictors]
        if self.group is not None:
            used.append(self.group)
        repeated = sorted({c for c in used if used.count(c) > 1})
        if repeated:
            raise ValueError(f"column(s) {repeated} used in more than one role")
        return self


class ModelConfig(_Section):
    """Pooling strategy, which coefficients vary by group, and how to sample them."""

    pooling: Literal["pooled", "unpooled", "hierarchical"] = "hierarchical"
    intercept: bool = True
    varying: list[str] | None = None
    group_predictors_for: list[str] = ["intercept"]
    parameterization: Literal["auto", "marginal", "centered", "noncentered"] = "auto"
    family: Literal["gaussian"] = "gaussian"


def _prior(**spec) -> dict:
    return Field(default_factory=lambda: dict(spec))


class PriorsConfig(_Section):
    """Default priors per role, and overrides per parameter name."""

    coefficient: dict[str, Any] = _prior(dist="Normal", mu=0, sigma=10)
    group_sd: dict[str, Any] = _prior(dist="HalfCauchy", beta=5)
    sigma: dict[str, Any] = _prior(dist="HalfCauchy", beta=5)
    overrides: dict[str, dict[str, Any]] = {}

    @field_validator("coefficient")
    @classmethod
    def _real_prior(cls, spec):
        return _checked(spec, positive=False)

    @field_validator("group_sd", "sigma")
    @classmethod
    def _scale_prior(cls, spec):
        return _checked(spec, positive=True)


def _checked(spec: dict, *, positive: bool) -> dict:
    try:
        check_prior(spec, positive=positive)
    except PriorProblem as exc:
        raise ValueError(str(exc)) from None
    return spec


class SamplerConfig(_Section):
    """NUTS settings; `seed` is drawn once and saved when not given, so runs can be repeated."""

    draws: int = Field(1000, ge=1)
    tune: int = Field(1000, ge=0)
    chains: int = Field(4, ge=1, le=64)
    cores: int | None = Field(None, ge=1)
    target_accept: float = Field(0.8, gt=0, lt=1)
    max_tree_depth: int = Field(10, ge=1, le=20)
    seed: int | None = Field(None, ge=0, lt=2**32)
    backend: Literal["auto", "nutpie", "pymc", "numpyro"] = "auto"


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

    @model_validator(mode="after")
    def _consistent(self):
        coefs = coefficient_names(self)
        if not coefs:
            raise ValueError(
                "the model has no coefficients: set model.intercept or data.predictors"
            )
        if self.model.pooling != "pooled" and self.data.group is None:
            raise ValueError(f"model.pooling '{self.model.pooling}' needs data.group")
        bad = [c for c in self.model.varying or [] if c not in coefs]
        if bad:
            raise ValueError(f"model.varying lists {bad}; coefficients are {coefs}")
        if self.data.group_predictors and self.model.pooling != "hierarchical":
            raise ValueError("data.group_predictors need model.pooling 'hierarchical'")
        if self.data.group_predictors:
            varying = varying_names(self)
            bad = [c for c in self.model.group_predictors_for if c not in varying]
            if bad:
                raise ValueError(
                    f"model.group_predictors_for lists {bad}; group predictors shift the means "
                    f"of varying coefficients, here {varying}"
                )
        names = parameter_names(self)
        problems = []
        for pname, spec in self.priors.overrides.items():
            if pname not in names:
                close = difflib.get_close_matches(pname, names, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                problems.append(
                    f"priors.overrides: no parameter '{pname}'.{hint} "
                    f"Parameters: {', '.join(names)}"
                )
                continue
            try:
                check_prior(spec, positive=names[pname] == "scale")
            except PriorProblem as exc:
                problems.append(f"priors.overrides -> {pname}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


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
    """Sampled parameter names -> role ('coefficient' or 'scale'), as named in the posterior."""
    varying = varying_names(config)
    names: dict[str, str] = {}
    for coef in coefficient_names(config):
        if coef in varying and config.model.pooling == "hierarchical":
            names[f"mu_{coef}"] = "coefficient"
            names[f"sigma_{coef}"] = "scale"
            if coef in config.model.group_predictors_for:
                for gp in config.data.group_predictors:
                    names[f"gamma_{coef}_{gp}"] = "coefficient"
        else:
            names[coef] = "coefficient"
    names["sigma"] = "scale"
    return names


def prior_for(config: Config, name: str) -> dict:
    """The prior of parameter `name`: its override, else the default for its role."""
    if name in config.priors.overrides:
        return config.priors.overrides[name]
    role = parameter_names(config)[name]
    if name == "sigma":
        return config.priors.sigma
    return config.priors.group_sd if role == "scale" else config.priors.coefficient


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read, override and validate a YAML experiment; raise ConfigError naming what is wrong."""
    raw = read_yaml_mapping(path)
    return parse_config(apply_overrides(raw, overrides), source=str(path))


def read_yaml_mapping(path: str | Path) -> dict:
    """Safe-load a YAML file that must hold a mapping; errors name the file and the line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory; give a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file '{path}' is {size:,} bytes; a config is at most "
            f"{MAX_CONFIG_BYTES:,} bytes (data belongs in a file named by data.path)"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {exc.start}); re-save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror or exc}") from None
    try:
        raw = _yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' {_yaml_problem(exc)}") from None
    if raw is None:
        raise ConfigError(f"config file '{path}' is empty; it needs at least name: and data:")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file '{path}' must be a YAML mapping (name:, data:, ...), "
            f"got a {_yaml_type(raw)}"
        )
    _check_size(raw, f"config file '{path}'")
    return raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'is not valid YAML at line 3, column 5: ...' for a parse or constructor error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    tag = re.search(r"constructor for the tag '([^']*)'", problem)
    if tag:
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return (
            f"uses the YAML tag '{name}'{where}; hbreg reads plain YAML only (no Python "
            "objects or other tags)"
        )
    if isinstance(exc, yaml.constructor.ConstructorError) and "appears twice" in problem:
        return f"is not a valid config{where}: {problem}"
    if "'\\t'" in problem:
        problem += "; YAML indents with spaces, not tabs"
    context = getattr(exc, "context", None)
    detail = problem
    if context and context not in problem:
        start = getattr(exc, "context_mark", None)
        opened = (
            f" that starts at line {start.line + 1}, column {start.column + 1}" if start else ""
        )
        detail = f"{problem} ({context}{opened})"
    return f"is not valid YAML{where}: {detail}"


def _yaml_type(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def _check_size(raw, where: str) -> None:
    """Refuse configs that expand (through YAML aliases) to absurdly many values."""
    stack, count = [raw], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{where} expands to more than {MAX_CONFIG_VALUES:,} values "
                "(YAML anchors and aliases?); a config is a few dozen keys"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b=c` overrides (values parsed as YAML) to a copy of the raw mapping."""
    import copy

    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key.strip()):
            raise ConfigError(f"--set '{item}' must look like section.key=value")
        try:
            value = _yaml_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set '{item}': the value {_yaml_problem(exc)}") from None
        _check_settable(key.strip().split("."), item)
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set '{item}': '{part}' is not a section")
            node = child
        node[leaf] = value
    _check_size(result, "the config with its --set overrides")
    return result


def _check_settable(parts: list[str], item: str) -> None:
    """Refuse `--set` keys that the schema does not have (free-form maps excepted)."""
    cls: type[BaseModel] | None = Config
    for depth, part in enumerate(parts):
        if cls is None:
            return
        fields = cls.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            close = difflib.get_close_matches(part, fields, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--set '{item}': no key '{part}' in {where}.{hint} Keys: {', '.join(fields)}"
            )
        annotation = fields[part].annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        cls = annotation if nested else None


def parse_config(raw: dict, *, source: str = "config") -> Config:
    """Validate a raw mapping; all problems are flattened into one ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        raise ConfigError(f"invalid config '{source}':\n  " + "\n  ".join(lines)) from None


def _describe(err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    where = " -> ".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown key '{loc[-1]}'.{hint} Allowed: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] not in {"value_error", "assertion_error"} and "input" in err:
        msg += f" (got {_short_repr(err['input'])})"
    return f"{where}: {msg}"


def _short_repr(value, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, dict | list) else _yaml_type(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fields_at(loc: list[str]) -> list[str]:
    cls: type[BaseModel] = Config
    for part in loc:
        if part not in cls.model_fields:
            return []
        annotation = cls.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return list(cls.model_fields)


def dump_config(config: Config) -> str:
    """The resolved config as YAML: every default filled in, so refitting it repeats the run."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
