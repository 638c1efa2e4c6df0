"""Strict YAML in, a validated schema object out: one copy for every command.

Mistakes are reported all at once, each with its location (`sampler -> draws`), and
unknown keys come with a "did you mean" hint. `--set a.b=c` overrides are applied to
the raw mapping before validation, so they are checked exactly like the file, and a
value means the same thing in `fit` and `simulate`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from hbreg.config.schema import Config
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


def apply_overrides(raw: dict, overrides: list[str], *, schema: type[BaseModel] = Config) -> dict:
    """Apply `a.b=c` overrides (values parsed as YAML) to a copy of the raw mapping.

    Keys are checked against `schema` (the experiment `Config`, or simulate's schema),
    so an unknown key is refused with a hint before anything else happens.
    """
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
        _check_settable(key.strip().split("."), item, schema)
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


def _check_settable(parts: list[str], item: str, schema: type[BaseModel]) -> None:
    """Refuse `--set` keys that the schema does not have (free-form maps excepted)."""
    cls: type[BaseModel] | None = schema
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
        cls = _nested_model(fields[part].annotation)


def _nested_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def parse_config(raw: dict, *, source: str = "config") -> Config:
    """Validate a raw experiment mapping; all problems are flattened into one ConfigError."""
    return validate_mapping(raw, Config, source=f"config '{source}'")


def validate_mapping(raw: dict, schema: type[BaseModel], *, source: str):
    """Validate `raw` against `schema`; every problem in one ConfigError naming `source`."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [describe_error(err, schema) for err in exc.errors()]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines)) from None


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
    cls: type[BaseModel] | None = schema
    for part in loc:
        if cls is None or part not in cls.model_fields:
            return []
        cls = _nested_model(cls.model_fields[part].annotation)
    return [] if cls is None else list(cls.model_fields)


def dump_config(config: Config) -> str:
    """The resolved config as YAML: every default filled in, so refitting it repeats the run."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
