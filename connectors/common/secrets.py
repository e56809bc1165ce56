"""Secrets: read from the environment or Prefect Secret blocks, and kept out of every log and message.

Every secret value that orderhub resolves is registered here; :func:`redact` replaces registered values in any
text, and :class:`RedactingFilter` does the same for log records (installed by :func:`install_log_redaction`).
"""
from __future__ import annotations

import logging
import os
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
MASK = "***"


class Secret(str):
    """A string whose repr never shows the value."""

    def __repr__(self) -> str:  # pragma: no cover - trivial
        return "Secret('***')"


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever orderhub prints text."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    pat = _pattern
    if pat is None or not isinstance(text, str):
        return text
    return pat.sub(MASK, text)


def env_secret(name: str, *, required: bool = True) -> Secret | None:
    """Read a secret from the environment variable ``name`` and register it for redaction."""
    value = os.environ.get(name)
    if value is None:
        if required:
            from orderhub.connectors.common.errors import ConfigError

            raise ConfigError(f"environment variable {name} is not set; export it or use a Prefect Secret block",
                              key=name)
        return None
    register_secret(value)
    return Secret(value)


def prefect_secret(block_name: str) -> Secret:
    """Load a Prefect ``Secret`` block by name and register its value for redaction."""
    from orderhub.connectors.common.errors import ConfigError

    try:
        from prefect.blocks.system import Secret as SecretBlock

        value = SecretBlock.load(block_name).get()
    except Exception as exc:  # noqa: BLE001 - any failure here is a config problem for the user
        raise ConfigError(f"cannot load Prefect Secret block {block_name!r}: {type(exc).__name__}",
                          key=f"secret:{block_name}") from None
    register_secret(str(value))
    return Secret(str(value))


class RedactingFilter(logging.Filter):
    """Masks registered secrets in log messages and their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        record.msg = redact(msg)
        record.args = ()
        return True


_installed = False


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to the root logger's handlers and to future ones (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    flt = RedactingFilter()
    old_factory = logging.getLogRecordFactory()

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        rec = old_factory(*args, **kwargs)
        flt.filter(rec)
        return rec

    logging.setLogRecordFactory(factory)
