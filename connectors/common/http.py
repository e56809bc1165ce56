"""The HTTP step every platform client shares: one POST with transport failures mapped to the common errors,
and a JSON answer checked to be an object (5xx and unparseable bodies are transient, reference §1.5/§3.5/§4.5).

Platform envelopes (TOP ``error_response``, JOS ``*_responce``, AOP ``error_code``, Doudian ``code``) stay in
each client; only what is the same for all of them lives here.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from orderhub.connectors.common.errors import (
    ConnectorError, MalformedResponse, NetworkTimeout, OrderhubError, RateLimitedError, ServerError,
    TransientError,
)


def post(http: httpx.Client, url: str, *, what: str, system: str, shop: str | None = None,
         **request: Any) -> httpx.Response:
    """``http.post(url, **request)``; a timeout becomes :class:`NetworkTimeout`, any other transport failure
    :class:`TransientError` (code ``network_error``). ``what`` starts the message (e.g. ``"taobao <method>"``)."""
    try:
        return http.post(url, **request)
    except httpx.TimeoutException as exc:
        raise NetworkTimeout(f"{what}: no answer in time ({type(exc).__name__})", system=system, shop=shop) \
            from None
    except httpx.TransportError as exc:
        raise TransientError(f"{what}: connection failed ({type(exc).__name__})", code="network_error",
                             system=system, shop=shop) from None


def json_object(resp: httpx.Response, *, what: str, system: str, shop: str | None = None,
                parse_float: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The answer's JSON object. HTTP 5xx → :class:`ServerError`; a body that is not a JSON object (truncated,
    HTML error page, empty) → :class:`MalformedResponse`. 4xx bodies are returned: they carry the envelope."""
    kw: dict[str, Any] = {"system": system, "shop": shop}
    if resp.status_code >= 500:
        raise ServerError(f"{what}: HTTP {resp.status_code} from the gateway", **kw)
    try:
        body = json.loads(resp.content, parse_float=parse_float)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise MalformedResponse(f"{what}: HTTP {resp.status_code} with a body that is not a JSON object "
                                f"({len(resp.content)} bytes)", **kw)
    return body


def router_body(resp: httpx.Response, body: Mapping[str, Any], root: str, to_error: Callable[[Any], OrderhubError],
                *, ban: Callable[[float], Any], what: str, system: str, shop: str | None = None) -> Any:
    """The TOP/JOS router envelope (reference §1.5, §2.5): ``error_response`` → ``to_error(it)`` raised (an
    announced ban is passed to ``ban`` first); otherwise the body under ``root``."""
    kw: dict[str, Any] = {"system": system, "shop": shop}
    if "error_response" in body:
        exc = to_error(body["error_response"])
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            ban(exc.retry_after)
        raise exc
    if resp.status_code >= 400:
        raise ConnectorError(f"{what}: HTTP {resp.status_code}", **kw)
    if root not in body:
        raise MalformedResponse(f"{what}: answer has no {root!r}", **kw)
    return body[root]


class FormSigner(httpx.Auth):
    """An httpx auth that re-sends a form POST with the fields returned by :meth:`sign_params` (query and form
    fields merged, as the TOP and JOS SDKs sign them, reference §1.2, §2.2). Subclasses implement
    ``sign_params``."""

    def sign_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        raise NotImplementedError

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        params = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
        if request.content:
            params.update(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True))
        body = urlencode(self.sign_params(params)).encode("utf-8")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "content-type")}
        headers["Content-Type"] = "application/x-www-form-urlencoded;charset=UTF-8"
        yield httpx.Request("POST", request.url.copy_with(query=None), headers=headers, content=body)
