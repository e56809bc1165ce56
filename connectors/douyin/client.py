"""Douyin shop (抖店 / Doudian open platform) client: signing, ``/order/searchList`` paging, error codes.

Protocol: official Doudian SDKs (Go ``utils/sign_util.go``, Java ``SignUtil``, Python ``calsSign``) and the
platform error-code table "平台基础错误码汇总" (reference: marketplaces §4). Plain httpx; no singer-sdk here.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any, Mapping

import httpx

from orderhub.connectors.alibaba1688.marketplace import ban_seconds_from, latest_by_id, read_pages_backwards
from orderhub.connectors.common.errors import (
    AuthError,
    BadRequestError,
    MalformedResponse,
    PermissionDenied,
    RateLimitedError,
    RemoteBusinessError,
    ServerError,
    SignatureError,
)
from orderhub.connectors.common.http import json_object, post
from orderhub.connectors.common.ratelimit import TokenBucket
from orderhub.connectors.common.retry import retry_policy
from orderhub.connectors.common.secrets import register_secret

SYSTEM = "douyin"
GATEWAY = "https://openapi-fxg.jinritemai.com"
SANDBOX_GATEWAY = "https://openapi-sandbox.jinritemai.com"
MAX_PAGE_SIZE = 100  # /order/searchList size maximum (§4.3)
SIGN_METHODS = ("hmac-sha256", "md5")
log = logging.getLogger("orderhub.douyin")

_TOKEN_SUBCODES = ("isv.access-token-expired", "isv.access-token-no-existed", "isv.access-token-invalid")


# --- protocol primitives ---------------------------------------------------------------------------------------
def param_json(params: Mapping[str, Any] | None) -> str:
    """Canonical ``param_json``: keys sorted at every depth, compact, UTF-8 kept, no HTML escaping (§4.2)."""
    return json.dumps(params or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign_pattern(app_key: str, secret: str, method: str, pjson: str, timestamp: str, v: str = "2") -> str:
    """``secret + "app_key"… "method"… "param_json"… "timestamp"… "v"… + secret`` (§4.2)."""
    return (f"{secret}app_key{app_key}method{method}param_json{pjson}timestamp{timestamp}v{v}{secret}")


def doudian_sign(app_key: str, secret: str, method: str, pjson: str, timestamp: str | int, *,
                 sign_method: str = "hmac-sha256", v: str = "2") -> str:
    """Lower-case hex HMAC-SHA256(key=secret, pattern), or MD5(pattern) when ``sign_method`` is ``md5``.
    ``access_token`` and ``sign_method`` are not part of the pattern (§4.2, vectors V9/V10)."""
    pattern = sign_pattern(app_key, secret, method, pjson, str(timestamp), v).encode("utf-8")
    if sign_method == "hmac-sha256":
        return hmac.new(secret.encode("utf-8"), pattern, hashlib.sha256).hexdigest()
    if sign_method == "md5":
        return hashlib.md5(pattern).hexdigest()  # noqa: S324 - the platform's algorithm
    raise ValueError(f"sign_method must be one of {SIGN_METHODS}, got {sign_method!r}")


def method_path(method: str) -> str:
    """``order.searchList`` → ``/order/searchList`` (§4.1)."""
    return "/" + method.replace(".", "/")


# --- client ----------------------------------------------------------------------------------------------------
class DouyinClient:
    """One Doudian app (app key + secret). Shops are told apart by their ``access_token``.

    Paced by a :class:`TokenBucket`; retried by the common policy: 20000/20001/50000 and HTTP 5xx, timeouts,
    truncated bodies and 60000 (rate limit; an announced ban is waited out) are retried; token, signature,
    permission and parameter errors are raised at once as the matching :mod:`errors` class (§4.5).
    """

    def __init__(self, app_key: str, app_secret: str, *, base_url: str = GATEWAY, sign_method: str = "hmac-sha256",
                 qps: float = 10.0, timeout: float = 30.0, max_attempts: int = 5, retry_base: float = 0.5,
                 retry_cap: float = 30.0, max_ban_wait: float = 300.0, default_ban_seconds: float = 1.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if sign_method not in SIGN_METHODS:
            raise ValueError(f"sign_method must be one of {SIGN_METHODS}, got {sign_method!r}")
        register_secret(app_secret)
        self.app_key, self._secret, self.sign_method = str(app_key), app_secret, sign_method
        self.base_url = base_url.rstrip("/")
        self.bucket = TokenBucket(qps, burst=max(1.0, qps))
        self.max_attempts, self.retry_base, self.retry_cap = max_attempts, retry_base, retry_cap
        self.max_ban_wait, self.default_ban_seconds = max_ban_wait, default_ban_seconds
        self.calls = 0
        self._http = httpx.Client(timeout=timeout, transport=transport, headers={
            "Content-Type": "application/json;charset=UTF-8", "x-open-no-old-err-code": "1", "from": "sdk",
            "User-Agent": "orderhub-douyin/0.1"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "DouyinClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def signed_query(self, method: str, pjson: str, *, access_token: str | None = None,
                     timestamp: int | None = None) -> dict[str, str]:
        """System parameters for the query string, ``sign`` included; ``timestamp`` is epoch seconds."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        q = {"app_key": self.app_key, "method": method, "timestamp": ts, "v": "2",
             "sign": doudian_sign(self.app_key, self._secret, method, pjson, ts, sign_method=self.sign_method),
             "sign_method": self.sign_method}
        if access_token:
            q["access_token"] = access_token
        return q

    # calling ------------------------------------------------------------------------------------------------------
    def call(self, method: str, params: Mapping[str, Any] | None = None, *, access_token: str | None = None,
             shop: str | None = None) -> Any:
        """One API call under the retry policy; returns ``data`` of the answer."""
        policy = retry_policy(attempts=self.max_attempts, base=self.retry_base, cap=self.retry_cap,
                              max_ban_wait=self.max_ban_wait, name=f"douyin {method} shop {shop or '-'}")
        return policy(self._call_once, method, params, access_token, shop)

    def _call_once(self, method: str, params: Mapping[str, Any] | None, access_token: str | None,
                   shop: str | None) -> Any:
        register_secret(access_token)  # it travels in the query string: keep it out of any log line
        self.bucket.acquire()
        pjson = param_json(params)
        query = self.signed_query(method, pjson, access_token=access_token)
        self.calls += 1
        resp = post(self._http, self.base_url + method_path(method), params=query, content=pjson.encode("utf-8"),
                    what=f"douyin {method}", system=SYSTEM, shop=shop)
        return self._check(resp, method, shop)

    def _check(self, resp: httpx.Response, method: str, shop: str | None) -> Any:
        """Map the answer envelope ``{code, msg, sub_code, sub_msg, log_id, data}`` to data or an error (§4.5)."""
        where = f"douyin {method}" + (f" shop {shop}" if shop else "")
        kw = {"system": SYSTEM, "shop": shop}
        body = json_object(resp, what=where, **kw)
        if "code" not in body and "err_no" in body:  # legacy envelope (no x-open-no-old-err-code)
            if int(body.get("err_no") or 0) == 0:
                return body.get("data")
            raise RemoteBusinessError(f"{where}: err_no {body.get('err_no')} {body.get('message') or ''}",
                                      remote_code=str(body.get("err_no")), **kw)
        try:
            code = int(body.get("code"))
        except (TypeError, ValueError):
            raise MalformedResponse(f"{where}: answer without a numeric code", **kw) from None
        if code == 10000:
            return body.get("data")
        sub, sub_msg, msg = str(body.get("sub_code") or ""), str(body.get("sub_msg") or ""), str(body.get("msg") or "")
        detail = f"{code} {sub} {sub_msg or msg}".strip()
        if body.get("log_id"):
            detail += f" (log_id {body['log_id']})"
        renew = (f"Renew the authorization of shop {shop or '?'} (POST /token/refresh with its refresh_token, or "
                 f"authorize the app again in the 抖店 service market) and update its access_token in the tap's "
                 f"shops setting")
        if code == 60000:
            wait = ban_seconds_from(sub_msg, msg, resp.headers.get("Retry-After"))
            wait = wait if wait is not None else self.default_ban_seconds
            self.bucket.pause(wait + 1.0)
            raise RateLimitedError(f"{where}: rate limited ({detail})", retry_after=wait, **kw)
        if code in (20000, 20001, 50000):
            raise ServerError(f"{where}: platform error ({detail})", **kw)
        if sub in _TOKEN_SUBCODES or (code == 50001 and "token-expired" in sub):
            raise AuthError(f"{where}: the access_token was rejected ({detail}); it expired or was revoked. {renew}",
                            **kw)
        if code == 30001 and sub.startswith("dop.authorization"):
            raise AuthError(f"{where}: the shop's authorization is closed or expired ({detail}). {renew}", **kw)
        if sub == "isv.signature-invalid" or sub == "isv.signature-missing":
            raise SignatureError(f"{where}: signature rejected ({detail}); check app_key/app_secret and sign_method",
                                 **kw)
        if code in (30001, 30002, 80000):
            raise PermissionDenied(f"{where}: not allowed ({detail})", **kw)
        if sub.startswith("isv.timestamp"):
            raise BadRequestError(f"{where}: timestamp refused ({detail}); check this machine's clock", **kw)
        if code in (30000, 40001, 40002, 40003, 40004):
            raise BadRequestError(f"{where}: request refused ({detail})", **kw)
        raise RemoteBusinessError(f"{where}: {detail}", remote_code=str(code), **kw)

    # orders -------------------------------------------------------------------------------------------------------
    def order_page(self, access_token: str, start: datetime, end: datetime, page: int,
                   size: int = MAX_PAGE_SIZE, *, shop: str | None = None) -> tuple[list[dict], int]:
        """One page of ``/order/searchList`` by ``update_time`` (unix seconds, page from 0); ``(orders, total)``."""
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise BadRequestError(f"douyin searchList size must be 1..{MAX_PAGE_SIZE}, got {size}", system=SYSTEM)
        data = self.call("order.searchList", {
            "update_time_start": int(start.timestamp()), "update_time_end": int(end.timestamp()),
            "order_by": "update_time", "order_asc": True, "page": page, "size": size,
        }, access_token=access_token, shop=shop) or {}
        return list(data.get("shop_order_list") or []), int(data.get("total") or 0)

    def order_detail(self, access_token: str, order_id: str, *, shop: str | None = None) -> dict:
        """``/order/orderDetail`` → ``shop_order_detail`` (the same shape as a list entry, lines included)."""
        data = self.call("order.orderDetail", {"shop_order_id": order_id}, access_token=access_token, shop=shop)
        detail = (data or {}).get("shop_order_detail")
        if not isinstance(detail, dict):
            raise MalformedResponse(f"douyin order.orderDetail shop {shop}: no shop_order_detail for {order_id}",
                                    system=SYSTEM, shop=shop)
        return detail

    def orders_updated_between(self, access_token: str, start: datetime, end: datetime, *,
                               shop: str | None = None, page_size: int = MAX_PAGE_SIZE) -> list[dict]:
        """Every shop order updated in ``[start, end]`` (whole seconds) once, latest version, lines included.

        ``end`` must lie in the past: pages are read backwards (:func:`read_pages_backwards`), so orders that
        change while we page are not skipped; an order listed without ``sku_order_list`` is read in detail.
        """
        raw = read_pages_backwards(lambda p: self.order_page(access_token, start, end, p, page_size, shop=shop),
                                   first_page=0, page_size=page_size)
        orders = latest_by_id((o for o in raw if o.get("order_id")), lambda o: str(o["order_id"]),
                              lambda o: int(o.get("update_time") or 0))
        out = []
        for oid, order in orders.items():
            if not order.get("sku_order_list"):
                try:
                    order = self.order_detail(access_token, oid, shop=shop)
                except (RemoteBusinessError, BadRequestError) as exc:  # this order only; the window goes on
                    log.warning("douyin shop %s order %s: listed without sku orders and the detail call failed "
                                "(%s); emitted without them", shop, oid, exc)
            out.append(order)
        missing = sum(1 for o in raw if not o.get("order_id"))
        if missing:
            log.error("douyin shop %s: %d listed orders have no order_id and were skipped", shop, missing)
        return out
