"""The one config loader: YAML files plus secrets from the environment or Prefect Secret blocks.

In any YAML value, ``${env:NAME}`` (or ``${NAME}``) is replaced by the environment variable ``NAME`` and
``${secret:BLOCK}`` by the value of the Prefect Secret block ``BLOCK``. Values that come from there are
registered as secrets, so they never appear in logs or messages. Keys whose name says "secret", "password",
"token" or "key" must use one of these forms, never a literal, outside of tests and the demo.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.common.secrets import prefect_secret, register_secret

_REF = re.compile(r"\$\{(?:(env|secret):)?([A-Za-z_][A-Za-z0-9_.\-/]*)\}")
SECRET_KEY_HINTS = ("secret", "password", "passwd", "token", "app_key_secret", "access_key", "dsn")


def _resolve_str(value: str, key: str) -> Any:
    def sub(m: re.Match[str]) -> str:
        kind, name = m.group(1) or "env", m.group(2)
        if kind == "secret":
            return str(prefect_secret(name))
        v = os.environ.get(name)
        if v is None:
            raise ConfigError(f"environment variable {name} is not set (referenced as {m.group(0)})", key=key)
        if any(h in key.lower() for h in SECRET_KEY_HINTS):
            register_secret(v)
        return v

    if "${" not in value:
        return value
    out = _REF.sub(sub, value)
    return out


def resolve(obj: Any, key: str = "") -> Any:
    """Resolve ``${…}`` references in every string of a nested structure."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            sub_key = f"{key}.{k}" if key else str(k)
            out[k] = resolve(v, sub_key)
            if isinstance(out[k], str) and any(h in str(k).lower() for h in SECRET_KEY_HINTS):
                register_secret(out[k])
        return out
    if isinstance(obj, list):
        return [resolve(v, f"{key}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str):
        return _resolve_str(obj, key)
    return obj


def load_yaml(path: str | Path, *, resolve_refs: bool = True) -> Any:
    """Read a YAML file; a syntax error names the file and line."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    return resolve(data) if resolve_refs else data


def require(cfg: dict[str, Any], key: str, typ: type | tuple[type, ...] = str, *, prefix: str = "") -> Any:
    """Return ``cfg[key]`` or raise a :class:`ConfigError` naming the key and the expected type."""
    full = f"{prefix}.{key}" if prefix else key
    if key not in cfg or cfg[key] is None:
        raise ConfigError("is required", key=full)
    v = cfg[key]
    if not isinstance(v, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ConfigError(f"must be {names}, got {type(v).__name__}", key=full)
    return v


_IDENT = re.compile(r"^[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_$#\u4e00-\u9fff]{0,127}$")


def sql_identifier(name: Any, *, key: str = "identifier", allow_schema: bool = True) -> str:
    """Validate a table/column name taken from config. Only letters, digits, ``_ $ #`` and one optional
    ``schema.`` prefix; anything else (quotes, spaces, ``;``, comments) is refused, so config cannot inject SQL.
    Values are never identifiers: they are always bound parameters."""
    if not isinstance(name, str) or not name:
        raise ConfigError("must be a non-empty table or column name", key=key)
    parts = name.split(".")
    if len(parts) > (2 if allow_schema else 1) or not all(_IDENT.match(p) for p in parts):
        raise ConfigError(f"{name!r} is not a valid SQL identifier (letters, digits, _ $ #, optional schema.)",
                          key=key)
    return name
