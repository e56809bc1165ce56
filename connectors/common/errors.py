"""The one error hierarchy of orderhub.

Every connector turns its platform's error envelope into one of these classes, so flows and retry policies
decide on two attributes only: ``code`` (a machine-readable reason code) and ``retryable``. Messages say what
to do; they never contain secrets (see :mod:`orderhub.connectors.common.secrets`).
"""
from __future__ import annotations

from typing import Any


class OrderhubError(Exception):
    """Base class. ``code`` is a stable reason code, ``retryable`` tells the retry policy what to do."""

    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None,
                 details: dict[str, Any] | None = None) -> None:
        from orderhub.connectors.common.secrets import redact

        super().__init__(redact(message))
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.details = details or {}

    @property
    def message(self) -> str:
        return self.args[0] if self.args else ""


class ConfigError(OrderhubError):
    """A configuration or pipeline file is wrong. The message names the key and says what to fix."""

    code = "config_invalid"

    def __init__(self, message: str, *, key: str | None = None, **kw: Any) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message, **kw)


class ConnectorError(OrderhubError):
    """Talking to an external system (marketplace, ERP, WMS, database) failed."""

    code = "connector_error"

    def __init__(self, message: str, *, system: str | None = None, shop: str | None = None, **kw: Any) -> None:
        self.system = system
        self.shop = shop
        super().__init__(message, **kw)


# --- retryable ------------------------------------------------------------------------------------------------
class TransientError(ConnectorError):
    """Worth retrying later: network error, timeout, 5xx, server-side (``isp.*``) error."""

    code = "transient"
    retryable = True


class ServerError(TransientError):
    code = "server_error"


class NetworkTimeout(TransientError):
    code = "timeout"


class MalformedResponse(TransientError):
    """The body could not be parsed (truncated JSON/XML). Usually a proxy or gateway hiccup."""

    code = "malformed_response"


class RateLimitedError(TransientError):
    """The platform throttled us. ``retry_after`` (seconds) is the ban the platform announced, if any."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


# --- not retryable ----------------------------------------------------------------------------------------------
class PermanentError(ConnectorError):
    code = "permanent"
    retryable = False


class AuthError(PermanentError):
    """Token/session invalid or expired. The message names the shop/account and what to renew."""

    code = "auth_failed"


class SignatureError(PermanentError):
    """The platform rejected our signature: app secret or signing method is misconfigured."""

    code = "signature_invalid"


class BadRequestError(PermanentError):
    """A parameter was missing or invalid. Retrying the same request cannot help."""

    code = "bad_request"


class PermissionDenied(PermanentError):
    code = "permission_denied"


class RemoteBusinessError(PermanentError):
    """The remote system refused the business operation (e.g. ERP validation). ``remote_code`` is its code."""

    code = "remote_rejected"

    def __init__(self, message: str, *, remote_code: str | None = None, **kw: Any) -> None:
        self.remote_code = remote_code
        super().__init__(message, **kw)


class CircuitOpenError(PermanentError):
    """A target kept failing; orderhub stopped calling it and held the remaining orders."""

    code = "circuit_open"


# --- record level ------------------------------------------------------------------------------------------------
class RecordError(OrderhubError):
    """One record is bad. It is quarantined with ``code`` as reason; the rest of its batch goes on."""

    code = "invalid_record"

    def __init__(self, message: str, *, code: str = "invalid_record", field: str | None = None,
                 record_id: str | None = None, **kw: Any) -> None:
        self.field = field
        self.record_id = record_id
        where = []
        if record_id:
            where.append(f"record {record_id}")
        if field:
            where.append(f"field {field}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message, code=code, **kw)
