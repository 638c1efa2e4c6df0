"""Strict YAML in, a validated schema object out: one copy for every command.

Mistakes are reported all at once, each with its location (`sampler -> draws`), and
unknown keys come with a "did you mean" hint. `--set a.b=c` overrides are applied to
the raw mapping before validation, so they are checked exactly like the file, and a
value means the same thing in `fit` and `simulate`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, Tag, ValidationError

from hbreg.config.schema import Config, parameter_names, prior_key
from hbreg.errors import ConfigError

__all__ = [
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_config",
    "read_yaml_mapping",
    "validate_mapping",
]

MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 100_000  # after YAML aliases are expanded: refuses "billion laughs"


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


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read, override and validate a YAML experiment; raise ConfigError naming what is wrong."""
    raw = read_yaml_mapping(path)
    return parse_config(
        apply_overrides(raw, overrides), source=str(path), overrides=overrides, defer_varying=True
    )


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


def apply_overrides(raw: dict, overrides: list[str], *, schema: type[BaseModel] = Config) -> dict:
    """Apply `a.b=c` overrides (values parsed as YAML) to a copy of the raw mapping.

    Keys are checked against `schema` (the experiment `Config`, or simulate's schema),
    so an unknown key is refused with a hint before anything else happens. A list of
    sections (simulate's `experiments`) is stepped into by position or by the `name`
    of an item (`experiments.0.sampler.draws`, `experiments.hier.sampler.draws`), and
    a union of sections (`truth: {mu: ...}` or `{coefficients: ...}`) by any of its
    members' keys.
    """
    import copy

    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(re.fullmatch(r"[A-Za-z0-9_][\w-]*", p) for p in parts):
            raise ConfigError(f"--set '{item}' must look like section.key=value")
        try:
            value = _yaml_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set '{item}': the value {_yaml_problem(exc)}") from None
        _check_settable(parts, item, schema)
        node = result
        *parents, leaf = parts
        for depth, part in enumerate(parents):
            if isinstance(node, list):
                node = node[_list_index(node, part, item)]
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise ConfigError(
                    f"--set '{item}': '{'.'.join(parts[: depth + 1])}' is not a section"
                )
            node = child
        if isinstance(node, list):
            node[_list_index(node, leaf, item)] = value
        else:
            node[leaf] = value
    _check_size(result, "the config with its --set overrides")
    return result


def _list_index(node: list, part: str, item: str) -> int:
    """A list item by position or by its `name` key."""
    if part.isdigit() and int(part) < len(node):
        return int(part)
    names = [e.get("name") for e in node if isinstance(e, dict)]
    if part in names:
        return names.index(part)
    raise ConfigError(
        f"--set '{item}': no item '{part}'; give an index below {len(node)} "
        f"or a name ({', '.join(map(str, names))})"
    )


def _check_settable(parts: list[str], item: str, schema: type[BaseModel]) -> None:
    """Refuse `--set` keys that the schema does not have (free-form maps excepted)."""
    position = _Position.of(schema)
    for depth, part in enumerate(parts):
        if position.items is not None:  # a list: `part` is a position or a name
            position = _Position.of(position.items)
            continue
        if not position.models:
            return  # a free-form map or a plain value: the validation has the last word
        fields = position.fields()
        if part not in fields:
            where = ".".join(parts[:depth]) or "the top level"
            close = difflib.get_close_matches(part, fields, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--set '{item}': no key '{part}' in {where}.{hint} Keys: {', '.join(fields)}"
            )
        position = position.field(part)


class _Position:
    """Where a key path has got to in a schema: the sections it may be, or a list of them.

    Unions (`truth: prior | {mu, ...} | {coefficients, ...}`) are kept as all their
    members, each with its tag (pydantic puts the tag in an error's location).
    """

    def __init__(self, models: dict[type[BaseModel], str | None], items=None):
        self.models = models  # section class -> its union tag (or None)
        self.items = items  # element annotation when this position is a list

    @classmethod
    def of(cls, annotation, tag: str | None = None) -> _Position:
        models: dict[type[BaseModel], str | None] = {}
        items = None
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            inner, *meta = typing.get_args(annotation)
            tags = [m.tag for m in meta if isinstance(m, Tag)]
            return cls.of(inner, tags[0] if tags else tag)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            models[annotation] = tag
        elif origin is list:
            items = typing.get_args(annotation)[0]
        elif origin is typing.Union or isinstance(annotation, types.UnionType):
            for arg in typing.get_args(annotation):
                member = cls.of(arg)
                models.update(member.models)
                items = items if member.items is None else member.items
        return cls(models, items)

    def fields(self) -> list[str]:
        return list(dict.fromkeys(f for m in self.models for f in m.model_fields))

    def field(self, part: str) -> _Position:
        merged = _Position({})
        for model in self.models:
            if part in model.model_fields:
                found = _Position.of(model.model_fields[part].annotation)
                merged.models.update(found.models)
                merged.items = merged.items if found.items is None else found.items
        return merged

    def step(self, part: str) -> _Position:
        """Step over one part of an error location: a key, a list position or a union tag."""
        if self.items is not None and part.isdigit():
            return _Position.of(self.items)
        if any(part in m.model_fields for m in self.models):
            return self.field(part)
        tagged = {m: t for m, t in self.models.items() if t == part}
        return _Position(tagged) if tagged else _Position({})


def parse_config(
    raw: dict,
    *,
    source: str = "config",
    overrides: Sequence[str] = (),
    defer_varying: bool = False,
) -> Config:
    """Validate a raw experiment mapping; all problems are flattened into one ConfigError.

    `overrides` are the `--set` items already applied to `raw`: a problem in a value they
    set is reported as theirs. With `defer_varying`, `model.varying` is checked later, once
    the data's columns are known (`hbreg.config.schema.varying_problem`).
    """
    context = {"varying_after_data": True} if defer_varying else None
    return validate_mapping(
        raw, Config, source=f"config '{source}'", overrides=overrides, context=context
    )


def validate_mapping(
    raw: dict,
    schema: type[BaseModel],
    *,
    source: str,
    overrides: Sequence[str] = (),
    context: dict | None = None,
):
    """Validate `raw` against `schema`; every problem in one ConfigError naming `source`.

    A problem at a key that a `--set` override gave names that override instead; when every
    problem is one, the message is about the `--set` values, not the file.
    """
    try:
        return schema.model_validate(raw, context=context)
    except ValidationError as exc:
        lines, from_set = [], 0
        for err in exc.errors():
            line = describe_error(err, schema)
            item = _override_at(err["loc"], overrides)
            if item is not None:
                line, from_set = f"--set '{item}': {line}", from_set + 1
            lines.append(line)
        what = source if from_set < len(lines) else "--set value" + ("s" * (len(lines) > 1))
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(lines)) from None


def _override_at(loc: tuple, overrides: Sequence[str]) -> str | None:
    """The last `--set` item whose key is `loc` or contains it, or lies inside it."""
    where = [str(p) for p in loc]
    for item in reversed(list(overrides)):
        key = item.partition("=")[0].strip().split(".")
        shared = min(len(key), len(where))
        if where and key[:shared] == where[:shared]:
            return item
    return None


def describe_error(err: dict, schema: type[BaseModel]) -> str:
    """One pydantic error as `where: what`, with a "did you mean" for unknown keys."""
    loc = [str(p) for p in err["loc"]]
    where = " -> ".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1], schema)
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


def _fields_at(loc: list[str], schema: type[BaseModel]) -> list[str]:
    """Allowed keys at an error location; list positions and union tags are stepped over."""
    position = _Position.of(schema)
    for part in loc:
        position = position.step(part)
    return position.fields()


def dump_config(config: Config) -> str:
    """The resolved config as YAML: every default filled in, so refitting it repeats the run.

    A role default (`priors.coefficient`, `group_sd`, `sigma`, `group_corr`) that the file
    did not state and that no parameter uses (every one has its own prior, e.g. scaled to
    the data; no correlation without `model.correlated`) is left out, so the file shows
    only the priors the run used. A formula config keeps its formula and not the roles.
    """
    dumped = config.model_dump(mode="json")
    used = {prior_key(config, name) for name in parameter_names(config)}
    if config.model.correlated:
        used.add("priors.group_corr")
    for role in ("coefficient", "group_sd", "sigma", "group_corr"):
        if role not in config.priors.model_fields_set and f"priors.{role}" not in used:
            del dumped["priors"][role]
    if config.model.formula is not None:  # the formula alone says what the roles are
        from hbreg.config.schema import FORMULA_ROLE_KEYS

        for section, keys in FORMULA_ROLE_KEYS.items():
            for key in keys:
                dumped[section].pop(key, None)
    return yaml.safe_dump(dumped, sort_keys=False)
