"""Reading a config: strict YAML (no duplicate keys, no recursive aliases, UTF-8
text) and ``--set key.sub=value`` overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Union

import yaml

from empp_ff.train.typed_config import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads ``5e-3`` and ``1e6`` as strings; read them as numbers
    (as YAML 1.2 does). A key given twice in one mapping is an error (PyYAML keeps the
    last silently: two ``train:`` blocks would drop the first). A subclass: PyYAML's own
    loaders are left untouched."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(
                    f"duplicate config key '{key}' (lines {seen[key] + 1} and {key_node.start_mark.line + 1}): "
                    "give each key once")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_acyclic(value: Any) -> None:
    """A recursive alias (``a: &x [*x]``) parses to a structure that contains itself."""
    done, path = set(), set()

    def walk(node: Any) -> None:
        if not isinstance(node, (dict, list)) or id(node) in done:
            return
        if id(node) in path:
            raise ConfigError("the config contains a recursive YAML alias (a structure that contains itself)")
        path.add(id(node))
        for child in (node.values() if isinstance(node, dict) else node):
            walk(child)
        path.discard(id(node))
        done.add(id(node))

    walk(value)


def parse_yaml(text: str) -> Any:
    value = yaml.load(text, Loader=_Loader)
    _check_acyclic(value)
    return value


def read_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:  # PyYAML's messages span lines: one line here
        raise ConfigError(f"cannot parse {path} as YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping at the top level")
    return data


def apply_overrides(mapping: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested mapping."""
    result = _deepcopy(mapping)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deepcopy(d):
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d
