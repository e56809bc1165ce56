"""1688 AOP open-platform client (阿里巴巴开放平台): signing, seller order paging, error envelopes.

Protocol: open.1688.com "API签名串组装规则" (sysSignature.htm) and the ``alibaba.trade.getSellerOrderList`` /
``alibaba.trade.get.sellerView`` API docs (reference: marketplaces §3). Plain httpx; no singer-sdk here.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
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
    SignatureError,
)
from orderhub.connectors.common.http import json_object, post
from orderhub.connectors.common.ratelimit import TokenBucket
from orderhub.connectors.common.retry import retry_policy
from orderhub.connectors.common.secrets import register_secret

SYSTEM = "alibaba1688"
GATEWAY = "https://gw.open.1688.com"
TRADE_NS = "com.alibaba.trade"
ORDER_LIST_API = "alibaba.trade.getSellerOrderList"
ORDER_DETAIL_API = "alibaba.trade.get.sellerView"
MAX_PAGE_SIZE = 20  # getSellerOrderList pageSize maximum (§3.3)
CST = timezone(timedelta(hours=8))
log = logging.getLogger("orderhub.alibaba1688")

_PERMISSION_CODES = {"gw.APIACLDecline", "gw.NoUsageLeftError", "gw.AppKeyNotFound", "gw.IpWhiteListDecline"}


# --- protocol primitives ---------------------------------------------------------------------------------------
def aop_signature(url_path: str, params: Mapping[str, str], secret: str) -> str:
    """``_aop_signature`` = uppercase hex HMAC-SHA1(key=secret, urlPath + Σ sorted(key+value)) (§3.2).

    ``url_path`` runs from ``param2`` up to the ``?`` (no host, no ``/openapi/``). The sort is over the joined
    ``key+value`` strings, not over keys. Every parameter but ``_aop_signature`` itself takes part, including
    ``access_token`` and ``_aop_timestamp``.
    """
    joined = "".join(sorted(k + v for k, v in params.items() if k != "_aop_signature"))
    return hmac.new(secret.encode("utf-8"), (url_path + joined).encode("utf-8"), hashlib.sha1).hexdigest().upper()


def format_aop_time(dt: datetime) -> str:
    """``java.util.Date`` wire format ``yyyyMMddHHmmssSSS+0800`` (§3.1); naive values are China time."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CST)
    dt = dt.astimezone(CST)
    return dt.strftime("%Y%m%d%H%M%S") + f"{dt.microsecond // 1000:03d}+0800"


def parse_aop_time(text: str) -> datetime:
    """Inverse of :func:`format_aop_time` (any ``±HHMM`` offset; 14-digit values without millis accepted)."""
    s = str(text).strip()
    digits, offset = s[:-5], s[-5:]
    if offset[0] not in "+-" or not offset[1:].isdigit():
        digits, offset = s, "+0800"
    if len(digits) == 14:
        digits += "000"
    if len(digits) != 17 or not digits.isdigit():
        raise ValueError(f"not a 1688 date (yyyyMMddHHmmssSSS+0800): {text!r}")
    return datetime.strptime(digits + offset, "%Y%m%d%H%M%S%f%z")


def _wire(value: Any) -> str:
    """Business parameter → form text: dates in 1688 format, bools lower-case, arrays/objects as JSON (§3.1)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_aop_time(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


# --- client ----------------------------------------------------------------------------------------------------
class Alibaba1688Client:
    """One 1688 app (app key + secret). Shops are told apart by their ``access_token``.

    Calls are paced by a :class:`TokenBucket` (``qps``) and retried by the common policy: HTTP 5xx, timeouts,
    truncated bodies and ``gw.Qos*`` limits are retried (a ban is waited out, never shortened); 401, signature,
    ACL and business errors are raised at once as the matching :mod:`errors` class.
    """

    def __init__(self, app_key: str, app_secret: str, *, base_url: str = GATEWAY, qps: float = 10.0,
                 timeout: float = 30.0, max_attempts: int = 5, retry_base: float = 0.5, retry_cap: float = 30.0,
                 max_ban_wait: float = 300.0, default_ban_seconds: float = 10.0, send_timestamp: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        register_secret(app_secret)
        self.app_key, self._secret = str(app_key), app_secret
        self.base_url = base_url.rstrip("/")
        self.bucket = TokenBucket(qps, burst=max(1.0, qps))
        self.max_attempts, self.retry_base, self.retry_cap = max_attempts, retry_base, retry_cap
        self.max_ban_wait, self.default_ban_seconds = max_ban_wait, default_ban_seconds
        self.send_timestamp = send_timestamp
        self.calls = 0
        self._http = httpx.Client(timeout=timeout, transport=transport,
                                  headers={"User-Agent": "orderhub-1688/0.1 (Ocean-SDK-Client compatible)"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Alibaba1688Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # signing ------------------------------------------------------------------------------------------------------
    def url_path(self, namespace: str, api: str, version: int = 1) -> str:
        """``param2/{version}/{namespace}/{api}/{appKey}`` — the app key sits in the path (§3.1)."""
        return f"param2/{version}/{namespace}/{api}/{self.app_key}"

    def signed_params(self, namespace: str, api: str, params: Mapping[str, Any], *,
                      access_token: str | None = None, timestamp_ms: int | None = None) -> dict[str, str]:
        """The form fields of one call, ``_aop_signature`` included."""
        out = {k: _wire(v) for k, v in params.items() if v is not None}
        if access_token:
            out["access_token"] = access_token
        if timestamp_ms is None and self.send_timestamp:
            timestamp_ms = int(time.time() * 1000)
        if timestamp_ms is not None:
            out["_aop_timestamp"] = str(timestamp_ms)
        out["_aop_signature"] = aop_signature(self.url_path(namespace, api), out, self._secret)
        return out

    # calling ------------------------------------------------------------------------------------------------------
    def call(self, namespace: str, api: str, params: Mapping[str, Any], *, access_token: str | None = None,
             shop: str | None = None) -> dict:
        """One API call under the retry policy; returns the parsed JSON body (numbers with decimals as Decimal)."""
        policy = retry_policy(attempts=self.max_attempts, base=self.retry_base, cap=self.retry_cap,
                              max_ban_wait=self.max_ban_wait, name=f"1688 {api} shop {shop or '-'}")
        return policy(self._call_once, namespace, api, params, access_token, shop)

    def _call_once(self, namespace: str, api: str, params: Mapping[str, Any], access_token: str | None,
                   shop: str | None) -> dict:
        register_secret(access_token)
        self.bucket.acquire()
        form = self.signed_params(namespace, api, params, access_token=access_token)
        url = f"{self.base_url}/openapi/{self.url_path(namespace, api)}"
        self.calls += 1
        resp = post(self._http, url, data=form, what=f"1688 {api}", system=SYSTEM, shop=shop)
        return self._check(resp, api, shop)

    def _check(self, resp: httpx.Response, api: str, shop: str | None) -> dict:
        """Turn the gateway/business envelope into a body or one of the common errors (§3.5)."""
        where = f"1688 {api}" + (f" shop {shop}" if shop else "")
        kw = {"system": SYSTEM, "shop": shop}
        body = json_object(resp, what=where, parse_float=Decimal, **kw)
        code = str(body.get("error_code") or "")
        if code or resp.status_code >= 400:
            message = str(body.get("error_message") or body.get("message") or "")
            detail = f"{code or 'HTTP ' + str(resp.status_code)}: {message}".strip()
            if code.startswith("gw.Qos"):
                wait = ban_seconds_from(message, resp.headers.get("Retry-After"))
                self.bucket.pause((wait if wait is not None else self.default_ban_seconds) + 1.0)
                raise RateLimitedError(f"{where}: rate limited ({detail})",
                                       retry_after=wait if wait is not None else self.default_ban_seconds, **kw)
            if resp.status_code == 401 or "token" in code.lower():
                raise AuthError(
                    f"{where}: the access_token was rejected ({detail}); it expired or was revoked. Renew the "
                    f"authorization of shop {shop or '?'} (refresh_token via system.oauth2/getToken, or authorize "
                    f"again at auth.1688.com) and update its access_token in the tap's shops setting", **kw)
            if code in ("gw.SignatureInvalid", "gw.SignatureMissing"):
                raise SignatureError(f"{where}: signature rejected ({detail}); check app_key/app_secret", **kw)
            if code in _PERMISSION_CODES or resp.status_code == 403:
                raise PermissionDenied(f"{where}: not allowed ({detail}); check the app's API subscription", **kw)
            raise BadRequestError(f"{where}: request refused ({detail})", **kw)
        success = body.get("success")
        if success is not None and str(success).lower() == "false":
            remote = str(body.get("errorCode") or body.get("code") or "")
            raise RemoteBusinessError(f"{where}: {remote} {body.get('errorMessage') or ''}".strip(),
                                      remote_code=remote or None, **kw)
        return body

    # orders -------------------------------------------------------------------------------------------------------
    def seller_order_page(self, access_token: str, start: datetime, end: datetime, page: int,
                          page_size: int = MAX_PAGE_SIZE, *, shop: str | None = None) -> tuple[list[dict], int]:
        """One page of ``alibaba.trade.getSellerOrderList`` by modified time; returns ``(orders, totalRecord)``."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadRequestError(f"1688 pageSize must be 1..{MAX_PAGE_SIZE}, got {page_size}", system=SYSTEM)
        body = self.call(TRADE_NS, ORDER_LIST_API, {
            "modifyStartTime": start, "modifyEndTime": end, "page": page, "pageSize": page_size,
            "needBuyerAddressAndPhone": True, "needMemoInfo": True,
        }, access_token=access_token, shop=shop)
        return list(body.get("result") or []), int(body.get("totalRecord") or 0)

    def seller_order_detail(self, access_token: str, order_id: str, *, shop: str | None = None) -> dict:
        """``alibaba.trade.get.sellerView`` for one order (lines, logistics, invoice)."""
        body = self.call(TRADE_NS, ORDER_DETAIL_API, {
            "webSite": "1688", "orderId": order_id, "includeFields": "GuaranteesTerms,NativeLogistics,OrderInvoice",
        }, access_token=access_token, shop=shop)
        result = body.get("result")
        if not isinstance(result, dict):
            raise MalformedResponse(f"1688 {ORDER_DETAIL_API} shop {shop}: no result for order {order_id}",
                                    system=SYSTEM, shop=shop)
        return result

    def orders_modified_between(self, access_token: str, start: datetime, end: datetime, *,
                                shop: str | None = None, page_size: int = MAX_PAGE_SIZE) -> list[dict]:
        """Every order modified in ``[start, end]`` once (latest version), with its ``productItems``.

        ``end`` must lie in the past: pages are read backwards (:func:`read_pages_backwards`) so orders that
        change while we page are not skipped. Orders listed without lines are completed by a detail call.
        """
        raw = read_pages_backwards(
            lambda p: self.seller_order_page(access_token, start, end, p, page_size, shop=shop),
            first_page=1, page_size=page_size)
        orders = latest_by_id((o for o in raw if order_id_of(o)), order_id_of, order_version)
        out = []
        for oid, order in orders.items():
            if not order.get("productItems"):
                try:
                    order = self.seller_order_detail(access_token, oid, shop=shop)
                except (RemoteBusinessError, BadRequestError) as exc:  # this order only; the window goes on
                    log.warning("1688 shop %s order %s: listed without lines and the detail call failed (%s); "
                                "emitted without lines", shop, oid, exc)
            out.append(order)
        skipped = [o for o in raw if not order_id_of(o)]
        if skipped:
            log.error("1688 shop %s: %d listed orders have no baseInfo.idOfStr/id and were skipped", shop,
                      len(skipped))
        return out


def order_id_of(trade: Mapping[str, Any]) -> str:
    """The order id as text (``idOfStr``; ids exceed 2^53, §6.2)."""
    base = trade.get("baseInfo") or {}
    value = base.get("idOfStr") or base.get("id")
    return str(value) if value not in (None, "") else ""


def order_version(trade: Mapping[str, Any]) -> datetime:
    """``baseInfo.modifyTime`` as a datetime (the order's version); unknown → the epoch."""
    try:
        return parse_aop_time((trade.get("baseInfo") or {})["modifyTime"])
    except (KeyError, ValueError, TypeError, IndexError):
        return datetime(1970, 1, 1, tzinfo=timezone.utc)
