"""Taobao/Tmall TOP protocol client: request signing, timestamps, error envelopes, retries and order paging.

Plain Python + httpx; no singer-sdk. Sources: TOP doc "API调用方法详解" (open.taobao.com docId=101617),
official SDK ``signTopRequest``, TOP error list; reference §1 (gateway §1.1, signature §1.2, order APIs §1.3,
errors and bans §1.5, OAID §1.6).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from orderhub.connectors.common.errors import (
    AuthError, BadRequestError, ConfigError, OrderhubError, PermissionDenied, RateLimitedError, RemoteBusinessError,
    SignatureError, TransientError,
)
from orderhub.connectors.common.http import FormSigner, json_object, post, router_body
from orderhub.connectors.common.retry import call_with_retry, retry_policy
from orderhub.connectors.common.secrets import register_secret
from orderhub.connectors.taobao.incremental import AppGate, page_backwards

log = logging.getLogger("orderhub.taobao")

SYSTEM = "taobao"
TOP_GATEWAY = "https://gw.api.taobao.com/router/rest"
SHANGHAI = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")
MAX_PAGE_SIZE = 100                      # increment.get page_size 1..100 (§1.3)
MAX_WINDOW = timedelta(days=1)           # end_modified - start_modified <= 1 day (§1.3)
HISTORY_LIMIT = timedelta(days=90)       # "只能获取到三个月以内的交易信息"

# Without ``type`` TOP lists only guarantee_trade, auto_delivery, ec, cod, step (§1.3): ask for every type.
ALL_TRADE_TYPES = (
    "fixed", "auction", "guarantee_trade", "step", "independent_simple_trade", "independent_shop_trade",
    "auto_delivery", "ec", "cod", "game_equipment", "shopex_trade", "netcn_trade", "external_trade",
    "instant_trade", "b2c_cod", "hotel_trade", "super_market_trade", "super_market_cod_trade", "taohua",
    "waimai", "o2o_offlinetrade", "nopaid", "eticket", "tmall_i18n", "insurance_plus", "finance",
)

# Header fields asked from trades.sold.increment.get (Trade.go, §1.3); lines come with ``orders``.
TRADE_FIELDS = (
    "tid", "tid_str", "status", "type", "created", "modified", "pay_time", "consign_time", "end_time",
    "payment", "total_fee", "post_fee", "discount_fee", "adjust_fee", "received_payment",
    "buyer_nick", "buyer_open_uid", "seller_nick", "has_buyer_message", "buyer_message", "seller_memo",
    "seller_flag", "receiver_name", "receiver_state", "receiver_city", "receiver_district", "receiver_town",
    "receiver_address", "receiver_zip", "receiver_mobile", "receiver_phone", "receiver_country", "oaid",
    "shipping_type", "step_trade_status", "trade_from", "invoice_kind", "invoice_name",
)
ORDER_FIELDS = (
    "oid", "oid_str", "status", "refund_status", "num_iid", "sku_id", "outer_iid", "outer_sku_id", "title",
    "sku_properties_name", "price", "num", "total_fee", "payment", "discount_fee", "adjust_fee",
    "divide_order_fee", "consign_time", "end_time", "logistics_company", "invoice_no", "store_code",
    "refund_id", "is_oversold",
)


# --- time -------------------------------------------------------------------------------------------------------
def top_time(when: datetime | float | None = None) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8, the format of TOP ``timestamp`` and of every TOP time field (§1.1)."""
    if when is None:
        when = time.time()
    if isinstance(when, (int, float)):
        when = datetime.fromtimestamp(when, SHANGHAI)
    elif when.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (Asia/Shanghai or UTC)")
    return when.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_top_time(text: str) -> datetime:
    """Parse a TOP ``yyyy-MM-dd HH:mm:ss`` (Asia/Shanghai) into an aware datetime."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)


# --- signing ----------------------------------------------------------------------------------------------------
def top_string_to_sign(params: Mapping[str, Any]) -> str:
    """All params except ``sign`` and empty values, sorted by name (ASCII), ``name+value`` concatenated (§1.2)."""
    return "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v is not None and v != "")


def sign_top(params: Mapping[str, Any], secret: str, method: str = "md5") -> str:
    """TOP ``sign``: ``md5`` = MD5(secret + s + secret); ``hmac`` = HMAC-MD5(secret, s); ``hmac-sha256`` =
    HMAC-SHA256(secret, s); uppercase hex, UTF-8 (§1.2, vectors V1–V4)."""
    s = top_string_to_sign(params).encode("utf-8")
    key = secret.encode("utf-8")
    if method == "md5":
        digest = hashlib.md5(key + s + key).hexdigest()
    elif method == "hmac":
        digest = hmac.new(key, s, hashlib.md5).hexdigest()
    elif method == "hmac-sha256":
        digest = hmac.new(key, s, hashlib.sha256).hexdigest()
    else:
        raise ConfigError(f"unknown TOP sign_method {method!r}; use one of {', '.join(SIGN_METHODS)}",
                          key="sign_method")
    return digest.upper()


class TopSigner(FormSigner):
    """Signs a TOP form request: adds the system params (``app_key``, ``timestamp``, ``v``, ``format``,
    ``sign_method``), then ``sign`` over query + form fields together, as the official SDK does (§1.1–1.2).
    Usable as ``httpx.Client(auth=TopSigner(...))``; :meth:`sign_params` is the same step on a dict."""

    def __init__(self, app_key: str, app_secret: str, sign_method: str = "md5", *,
                 clock: Callable[[], float] = time.time) -> None:
        if sign_method not in SIGN_METHODS:
            raise ConfigError(f"unknown TOP sign_method {sign_method!r}; use one of {', '.join(SIGN_METHODS)}",
                              key="sign_method")
        register_secret(app_secret)
        self.app_key, self._secret, self.sign_method, self._clock = app_key, app_secret, sign_method, clock

    def sign_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        out = {k: str(v) for k, v in params.items() if v is not None and v != "" and k != "sign"}
        out.setdefault("app_key", self.app_key)
        out.setdefault("timestamp", top_time(self._clock()))
        out.setdefault("v", "2.0")
        out.setdefault("format", "json")
        out.setdefault("sign_method", self.sign_method)
        out["sign"] = sign_top(out, self._secret, out["sign_method"])
        return out


# --- errors -----------------------------------------------------------------------------------------------------
_BAN = re.compile(r"ban will last for (\d+) more seconds", re.I)
_RATE_CODES = {4, 5, 6, 7}           # User/Session/Partner/App Call Limited
_TRANSIENT_CODES = {8, 10, 15}       # exceeds frequency, service unavailable, remote service error
_PERMISSION_CODES = {11, 12, 13}
_AUTH_SUBCODES = {"invalid-sessionkey", "session-expired", "isv.session-expired", "isv.invalid-sessionkey"}


def top_error(err: Mapping[str, Any], *, shop: str | None = None, api: str = "") -> OrderhubError:
    """Turn a TOP ``error_response`` into the orderhub error hierarchy (§1.5 client policy)."""
    try:
        code = int(err.get("code", 0))
    except (TypeError, ValueError):
        code = 0
    msg = str(err.get("msg") or "")
    sub_code = str(err.get("sub_code") or "")
    sub_msg = str(err.get("sub_msg") or "")
    what = f"TOP {api} error {code} {msg}" + (f" ({sub_code}: {sub_msg})" if sub_code or sub_msg else "")
    where = f"taobao shop {shop}: " if shop else "taobao: "
    kw: dict[str, Any] = {"system": SYSTEM, "shop": shop}
    ban = _BAN.search(sub_msg) or _BAN.search(msg)
    if code in _RATE_CODES or sub_code.startswith(("accesscontrol.limited", "isv.access-limited")):
        return RateLimitedError(where + what, retry_after=int(ban.group(1)) if ban else None, **kw)
    if code in (26, 27) or sub_code in _AUTH_SUBCODES:
        return AuthError(f"{where}the session key is missing, invalid or expired ({what}). Renew the session key "
                         f"(re-authorize the shop through TOP OAuth) and update shops[].session for shop {shop}.",
                         **kw)
    if code in (24, 25):
        return SignatureError(f"{where}{what}: the gateway rejected the signature; check app_secret and "
                              f"sign_method", **kw)
    if sub_code.startswith("isp.") or code in _TRANSIENT_CODES and not sub_code.startswith("isv."):
        return TransientError(where + what, **kw)
    if code in _PERMISSION_CODES or "permission" in sub_code:
        return PermissionDenied(where + what, **kw)
    if code == 31:
        return BadRequestError(f"{where}{what}: the timestamp was rejected; the gateway allows 10 minutes of "
                               f"clock difference, check this machine's clock", **kw)
    if 21 <= code <= 34 or 40 <= code <= 43:
        return BadRequestError(where + what, **kw)
    if sub_code.startswith("isv."):
        return RemoteBusinessError(where + what, remote_code=sub_code, **kw)
    return RemoteBusinessError(where + what, remote_code=str(code), **kw)


def response_key(method: str) -> str:
    """``taobao.trades.sold.increment.get`` → ``trades_sold_increment_get_response`` (JSON, simplify=false)."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


# --- client -----------------------------------------------------------------------------------------------------
class TaobaoClient:
    """One TOP app (``app_key``/``app_secret``) on one gateway, for any number of shops (session keys).

    Every call is paced by the app's :class:`AppGate`, signed by :class:`TopSigner`, and retried by the common
    retry policy (transient errors, announced bans waited out exactly). Errors surface as the orderhub hierarchy.
    """

    def __init__(self, app_key: str, app_secret: str, *, api_url: str = TOP_GATEWAY, sign_method: str = "md5",
                 qps: float = 10.0, timeout: float = 30.0, attempts: int = 5, max_ban_wait: float = 300.0,
                 backoff_base: float = 0.5, http: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not app_key or not app_secret:
            raise ConfigError("app_key and app_secret are required", key="app_key")
        self.api_url = api_url
        self.signer = TopSigner(app_key, app_secret, sign_method, clock=clock)
        self.gate = AppGate.for_app(SYSTEM, api_url, app_key, qps)
        self.attempts, self.max_ban_wait, self.backoff_base = attempts, max_ban_wait, backoff_base
        self.http = http or httpx.Client(timeout=timeout, headers={"User-Agent": "orderhub-top/0.1"})
        self.clock = clock

    def close(self) -> None:
        self.http.close()

    # one call ---------------------------------------------------------------------------------------------------
    def call(self, method: str, params: Mapping[str, Any] | None = None, *, session: str | None = None,
             shop: str | None = None) -> dict[str, Any]:
        """Call ``method`` and return the body under its ``*_response`` key; retried per the common policy."""
        policy = retry_policy(attempts=self.attempts, base=self.backoff_base, max_ban_wait=self.max_ban_wait,
                              name=f"taobao {method} shop={shop}")
        return call_with_retry(self._call_once, method, dict(params or {}), session, shop, policy=policy)

    def _call_once(self, method: str, params: dict[str, Any], session: str | None, shop: str | None) -> dict:
        form = {**params, "method": method}
        if session:
            register_secret(session)
            form["session"] = session
        what, kw = f"taobao {method}", {"system": SYSTEM, "shop": shop}
        with self.gate.turn(max_ban_wait=self.max_ban_wait, shop=shop):
            resp = post(self.http, self.api_url, data=form, auth=self.signer, what=what, **kw)
        body = json_object(resp, what=what, **kw)
        return router_body(resp, body, response_key(method),
                                lambda err: top_error(err, shop=shop, api=method), ban=self.gate.ban, what=what, **kw)

    # order APIs -------------------------------------------------------------------------------------------------
    def trades_increment_page(self, session: str, start: datetime, end: datetime, page_no: int, *,
                              page_size: int = MAX_PAGE_SIZE, fields: str | None = None,
                              trade_types: tuple[str, ...] = ALL_TRADE_TYPES, shop: str | None = None,
                              ) -> tuple[list[dict[str, Any]], int]:
        """One page of ``taobao.trades.sold.increment.get`` (modified in [start, end], newest first, §1.3).
        Returns ``(trades, total_results)``; each trade's ``orders.order`` holds its lines."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be 1..{MAX_PAGE_SIZE}", key="page_size")
        if end - start > MAX_WINDOW:
            raise ConfigError("a TOP increment window is at most 1 day", key="window_minutes")
        body = self.call("taobao.trades.sold.increment.get", {
            "fields": fields or default_fields(), "start_modified": top_time(start), "end_modified": top_time(end),
            "type": ",".join(trade_types), "page_no": page_no, "page_size": page_size, "use_has_next": "false",
        }, session=session, shop=shop)
        trades = (body.get("trades") or {}).get("trade") or []
        return trades, int(body.get("total_results") or 0)

    def trade_fullinfo(self, session: str, tid: int | str, fields: str, *, shop: str | None = None) -> dict:
        """``taobao.trade.fullinfo.get`` for one trade (the list APIs return partial data, §1.3)."""
        return self.call("taobao.trade.fullinfo.get", {"tid": tid, "fields": fields},
                         session=session, shop=shop).get("trade") or {}

    def fetch_window(self, session: str, start: datetime, end: datetime, *, page_size: int = MAX_PAGE_SIZE,
                     shop: str | None = None, fetch_buyer_message: bool = True,
                     trade_types: tuple[str, ...] = ALL_TRADE_TYPES) -> list[dict[str, Any]]:
        """Every trade modified in ``[start, end]``, latest version of each, oldest first.

        Pages backwards (:func:`page_backwards`), so trades that change while we page cannot push others out
        of sight. The list API does not return ``buyer_message`` (it says ``has_buyer_message``); for those
        trades one ``taobao.trade.fullinfo.get`` fills it in.
        """
        rows = page_backwards(
            lambda p: self.trades_increment_page(session, start, end, p, page_size=page_size, shop=shop,
                                                 trade_types=trade_types), page_size)
        latest: dict[str, dict[str, Any]] = {}
        for t in rows:
            key = str(t.get("tid_str") or t.get("tid"))
            if key not in latest or str(t.get("modified", "")) >= str(latest[key].get("modified", "")):
                latest[key] = t
        trades = sorted(latest.values(),
                        key=lambda t: (str(t.get("modified", "")), str(t.get("tid_str") or t.get("tid"))))
        if fetch_buyer_message:
            for t in trades:
                if t.get("has_buyer_message") and not t.get("buyer_message"):
                    full = self.trade_fullinfo(session, t.get("tid_str") or t["tid"], "tid,buyer_message", shop=shop)
                    t["buyer_message"] = full.get("buyer_message")
        return trades


def default_fields() -> str:
    """The ``fields`` parameter: header fields plus every line field (``orders.x``)."""
    return ",".join([*TRADE_FIELDS, *(f"orders.{f}" for f in ORDER_FIELDS)])
