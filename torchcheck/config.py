"""`[tool.torchcheck]` in the nearest pyproject.toml, and rule selection."""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from torchcheck.target_version import infer_target_version, toml_reader

DEFAULT_EXCLUDE = (".*", "__pycache__", ".venv", "venv", "build", "dist", "node_modules", "site-packages")
KNOWN_KEYS = {"select", "ignore", "extend-select", "exclude", "extend-exclude", "per-file-ignores", "rules",
              "target-version", "cache", "max-file-size"}


class ConfigError(Exception):
    """A config file or command line a user can fix; the message names the key."""


@dataclass(frozen=True)
class Config:
    """The settings in effect: `[tool.torchcheck]` merged with the command line."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    per_file_ignores: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rule_options: dict[str, dict] = field(default_factory=dict)
    target_version: tuple[int, ...] | None = None  # None: unknown
    target_version_source: str = ""
    cache: bool = True
    max_file_size: float = 4.0  # MB
    root: Path = Path(".")
    source: Path | None = None

    def fingerprint(self) -> str:
        """Everything that changes results, for cache keys."""
        return repr((self.select, self.ignore, self.extend_select, sorted(self.per_file_ignores.items()),
                     sorted((k, sorted(v.items())) for k, v in self.rule_options.items()), self.target_version))


def find_pyproject(start: Path) -> Path | None:
    start = start.resolve()
    for directory in [start, *start.parents] if start.is_dir() else [start.parent, *start.parent.parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _string_list(table: dict, key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings")
    return tuple(value)


def _bool(table: dict, key: str, where: str, default: bool = True) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: `{key}` must be true or false")
    return value


def _number(table: dict, key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}: `{key}` must be a positive number (megabytes)")
    return float(value)


def parse_version(text: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:3])
    except ValueError:
        raise ConfigError(f"{where}: `target-version` must look like \"2.1\", got {text!r}") from None


def load_config(start: Path, explicit: Path | None = None) -> Config:
    path = explicit or find_pyproject(start)
    if path is None:
        root = start.resolve() if start.is_dir() else start.resolve().parent
        return Config(root=root, **_inferred_target(root))
    tomllib = toml_reader()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    table = data.get("tool", {}).get("torchcheck", {})
    where = f"{path} [tool.torchcheck]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key `{unknown[0]}` (known: {', '.join(sorted(KNOWN_KEYS))})")
    per_file = table.get("per-file-ignores", {})
    if not isinstance(per_file, dict):
        raise ConfigError(f"{where}: `per-file-ignores` must be a table of glob = [codes]")
    rules = table.get("rules", {})
    if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
        raise ConfigError(f"{where}: `rules` must be a table of rule-name = {{ option = value }}")
    if rules:
        from torchcheck.registry import resolve_rule
    for rule_name, options in rules.items():
        rule = resolve_rule(rule_name)
        if rule is None:
            raise ConfigError(f"{where}: `rules.{rule_name}` is not a rule")
        allowed = rule.options or {}
        for key in options:
            if key not in allowed:
                raise ConfigError(f"{where}: `rules.{rule_name}.{key}` is not an option of {rule.name}"
                                  f" (options: {', '.join(allowed) or 'none'})")
    target = table.get("target-version")
    return Config(
        select=_string_list(table, "select", where),
        ignore=_string_list(table, "ignore", where),
        extend_select=_string_list(table, "extend-select", where),
        exclude=DEFAULT_EXCLUDE + _string_list(table, "exclude", where) + _string_list(table, "extend-exclude", where),
        per_file_ignores={k: _string_list(per_file, k, where + ".per-file-ignores") for k in per_file},
        rule_options={resolve_rule(k).name: dict(v) for k, v in rules.items()},
        **({"target_version": parse_version(target, where), "target_version_source": f"{where} target-version"}
           if target is not None else _inferred_target(path.parent.resolve())),
        cache=_bool(table, "cache", where),
        max_file_size=_number(table, "max-file-size", where, 4.0),
        root=path.parent.resolve(),
        source=path,
    )


def _inferred_target(root: Path) -> dict:
    version, source = infer_target_version(root)
    return {"target_version": version, "target_version_source": source}


def matches(selector: str, code: str, name: str) -> bool:
    return selector == "ALL" or code.startswith(selector) or selector == name


def is_excluded(path: Path, config: Config) -> bool:
    """Whether any part of `path`, or the whole of it, matches an exclude pattern."""
    pattern = _exclude_pattern(tuple(config.exclude))
    if pattern is None:
        return False
    return any(pattern.match(os.path.normcase(part)) for part in path.parts if part not in (".", "..")) \
        or pattern.match(os.path.normcase(path.as_posix())) is not None


def is_excluded_entry(name: str, relative: str, config: Config) -> bool:
    """`is_excluded` for an entry named `name` of a folder that is not excluded (so that none of the
    folder's own parts matches), at `relative` ("/"-separated) below the linted folder."""
    pattern = _exclude_pattern(tuple(config.exclude))
    return pattern is not None and (pattern.match(os.path.normcase(name)) is not None
                                    or pattern.match(os.path.normcase(relative)) is not None)


@lru_cache(maxsize=8)
def _exclude_pattern(patterns: tuple[str, ...]) -> re.Pattern | None:
    """The exclude globs as one regular expression: discovery asks it of every file of the tree."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(os.path.normcase(p))})" for p in patterns))
