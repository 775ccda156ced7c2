"""The typed-config engine: a tree of dataclasses built from a YAML mapping.

Generic (nothing here knows the training config). :func:`load` does it in three
passes: every unknown or misspelled key, in one error that names each full dotted
key and suggests the nearest valid one; every value against its annotation (a wrong
type names the key, the expected type and the value given); then every section's own
``validate()``, sections inside a section first (a ``ValueError`` there becomes a
:class:`ConfigError` with its message, which names the key).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Dict, List, Union


class ConfigError(ValueError):
    """A configuration problem, reported before any training work."""


def load(cls, mapping: Any):
    """The dataclass tree ``cls`` built from ``mapping`` and checked (the three passes above)."""
    check_keys(cls, mapping)
    config = _build(cls, mapping)
    _validate_sections(config)
    return config


def _suggest(key: str, valid: List[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(valid))}"


def _unknown_keys(cls, mapping: Any, prefix: str = "") -> List[tuple]:
    """(dotted key, hint) of every unknown key in ``mapping``, a tree for dataclass ``cls``."""
    if not isinstance(mapping, dict):
        return []  # _build names the bad section
    hints, names = typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]
    found = []
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            found.append((dotted, _suggest(dotted, [f"{prefix}.{n}" if prefix else n for n in names])))
        elif dataclasses.is_dataclass(hints[key]):
            found += _unknown_keys(hints[key], value, dotted)
    return found


def check_keys(cls, mapping: Any) -> None:
    """All unknown keys in one error, so that a config with two typos is fixed in one go."""
    found = _unknown_keys(cls, mapping)
    if len(found) == 1:
        raise ConfigError(f"unknown config key '{found[0][0]}'; {found[0][1]}")
    if found:
        raise ConfigError(f"{len(found)} unknown config keys: " + ", ".join(f"'{k}' ({h})" for k, h in found))


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted as floats)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (list, List):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, k_tp, f"{key}.<key>"): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e6, 100.0
            return int(value)
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"config key '{key}': unsupported type {tp}")


def _build(cls, mapping: Any, prefix: str = ""):
    """``cls`` from ``mapping``, whose keys :func:`check_keys` has checked."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        where = f"config section '{prefix}'" if prefix else "the config"
        raise ConfigError(f"{where} must be a mapping, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: _coerce(value, hints[key], f"{prefix}.{key}" if prefix else str(key))
                  for key, value in mapping.items()})


def _validate_sections(section) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            _validate_sections(value)
    validate = getattr(section, "validate", None)
    if validate is None:
        return
    try:
        validate()
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
