"""JD JOS (宙斯) protocol client for POP orders: routerjson signing, timestamps, error envelopes, retries, paging.

Plain Python + httpx; no singer-sdk. Sources: JOS 开发规范 (help.jd.com/jos/question-580.html), JD dev guide
listId=2643, open SDKs (rise-worlds/jos, pifeifei/jingdong-jos-api-sdk); reference §2 (gateway §2.1,
signature §2.2, order APIs §2.3, states §2.4, errors §2.5, privacy §2.6).
"""
from __future__ import annotations

import calendar
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
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

log = logging.getLogger("orderhub.jd")

SYSTEM = "jd"
JOS_GATEWAY = "https://api.jd.com/routerjson"
SHANGHAI = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_PAGE_SIZE = 100                     # pop.order.search page_size ≤ 100 (§2.3)
SEARCH = "jingdong.pop.order.search"
EN_SEARCH = "jingdong.pop.order.enSearch"
ORDER_APIS = (SEARCH, EN_SEARCH)
# Every POP order state (§2.4): order_state is required and filters.
ALL_STATES = ("WAIT_SELLER_STOCK_OUT", "WAIT_SELLER_DELIVERY", "WAIT_GOODS_RECEIVE_CONFIRM", "FINISHED_L",
              "TRADE_CANCELED", "LOCKED", "PAUSE", "POP_ORDER_PAUSE", "WAIT_SEND_CODE")
OPTIONAL_FIELDS = (
    "orderId", "venderId", "orderType", "payType", "orderTotalPrice", "orderSellerPrice", "orderPayment",
    "freightPrice", "sellerDiscount", "orderState", "orderStateRemark", "deliveryType", "invoiceInfo",
    "invoiceCode", "orderRemark", "orderStartTime", "orderEndTime", "consigneeInfo", "itemInfoList",
    "couponDetailList", "venderRemark", "balanceUsed", "pin", "open_id_buyer", "returnOrder",
    "paymentConfirmTime", "waybill", "logisticsId", "modified", "parentOrderId", "orderSource", "storeOrder",
    "idSopShipmenttype", "taxFee", "storeId",
)


# --- time -------------------------------------------------------------------------------------------------------
def jd_time(when: datetime | float | None = None) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8: JOS business dates (``start_date``/``end_date``, §2.3)."""
    if when is None:
        when = time.time()
    if isinstance(when, (int, float)):
        when = datetime.fromtimestamp(when, SHANGHAI)
    elif when.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime")
    return when.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def jd_timestamp(when: float | None = None) -> str:
    """System ``timestamp`` as current JOS SDKs send it: ``yyyy-MM-dd HH:mm:ss.SSS+0800`` (§2.1, vector V5)."""
    now = time.time() if when is None else when
    dt = datetime.fromtimestamp(now, SHANGHAI)
    return dt.strftime(TIME_FORMAT) + f".{dt.microsecond // 1000:03d}+0800"


def parse_jd_time(text: str) -> datetime:
    return datetime.strptime(text[:19], TIME_FORMAT).replace(tzinfo=SHANGHAI)


def add_month(dt: datetime) -> datetime:
    """Same day next month (clamped to the month's last day): the JOS "span ≤ 1 month" bound."""
    y, m = (dt.year + (dt.month // 12), dt.month % 12 + 1)
    return dt.replace(year=y, month=m, day=min(dt.day, calendar.monthrange(y, m)[1]))


# --- signing ----------------------------------------------------------------------------------------------------
def param_json(business: Mapping[str, Any]) -> str:
    """``360buy_param_json``: keys sorted, compact — "标准json类型，而且是按照字母先后顺序排序的" (§2.1)."""
    return json.dumps(dict(business), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def jd_string_to_sign(params: Mapping[str, Any]) -> str:
    return "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v is not None and v != "")


def sign_jd(params: Mapping[str, Any], secret: str) -> str:
    """JOS ``sign`` = MD5(secret + Σ sorted(name+value) + secret), uppercase hex; ``360buy_param_json`` is
    signed exactly as sent (§2.2, vectors V5, V6)."""
    key = secret.encode("utf-8")
    return hashlib.md5(key + jd_string_to_sign(params).encode("utf-8") + key).hexdigest().upper()


class JosSigner(FormSigner):
    """Signs a routerjson form request: adds ``app_key``, ``timestamp``, ``v=2.0`` and ``sign`` (no ``format`` or
    ``sign_method``: JOS does not need them, §2.1). Usable as an httpx auth; :meth:`sign_params` on a dict."""

    def __init__(self, app_key: str, app_secret: str, *, clock: Callable[[], float] = time.time) -> None:
        register_secret(app_secret)
        self.app_key, self._secret, self._clock = app_key, app_secret, clock

    def sign_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        out = {k: str(v) for k, v in params.items() if v is not None and v != "" and k != "sign"}
        out.setdefault("app_key", self.app_key)
        out.setdefault("timestamp", jd_timestamp(self._clock()))
        out.setdefault("v", "2.0")
        out["sign"] = sign_jd(out, self._secret)
        return out


# --- errors -----------------------------------------------------------------------------------------------------
def jd_error(err: Mapping[str, Any], *, shop: str | None = None, api: str = "",
             ban_seconds: float | None = None) -> OrderhubError:
    """Turn a JOS ``error_response`` (code is a string) into the orderhub hierarchy (§2.5 policy)."""
    code = str(err.get("code", ""))
    desc = str(err.get("zh_desc") or "")
    en = str(err.get("en_desc") or "")
    what = f"JOS {api} error {code} {en or desc}" + (f" ({desc})" if en and desc else "")
    where = f"jd shop {shop}: " if shop else "jd: "
    kw: dict[str, Any] = {"system": SYSTEM, "shop": shop}
    if code == "2":
        # JOS does not say how long the limit lasts; wait the configured cool-down (never probe during it).
        return RateLimitedError(where + what, retry_after=ban_seconds, **kw)
    if code in ("18", "19"):
        return AuthError(f"{where}the access_token is missing, invalid or expired ({what}). Renew the access "
                         f"token (re-authorize the shop through JOS OAuth) and update shops[].access_token for "
                         f"shop {shop}.", **kw)
    if code in ("11", "12"):
        return SignatureError(f"{where}{what}: the gateway rejected the signature; check app_secret", **kw)
    if code == "65":
        return TransientError(where + what, **kw)
    if code == "24":
        return PermissionDenied(f"{where}{what}: the shop has not granted this app the API", **kw)
    if code == "8":
        return BadRequestError(f"{where}{what}: the timestamp was rejected; JOS allows 6 minutes of clock "
                               f"difference, check this machine's clock", **kw)
    if code in ("4", "5", "7", "14", "15", "21"):
        return BadRequestError(where + what, **kw)
    return RemoteBusinessError(where + what, remote_code=code, **kw)


def response_root(method: str) -> str:
    """``jingdong.pop.order.search`` → ``jingdong_pop_order_search_responce`` (JD's spelling, §2.3)."""
    return method.replace(".", "_") + "_responce"


# --- client -----------------------------------------------------------------------------------------------------
class JDClient:
    """One JOS app on one gateway, for any number of shops (access tokens); paced, signed, retried."""

    def __init__(self, app_key: str, app_secret: str, *, api_url: str = JOS_GATEWAY, qps: float = 10.0,
                 timeout: float = 30.0, attempts: int = 5, max_ban_wait: float = 300.0,
                 rate_limit_cooldown: float = 60.0, backoff_base: float = 0.5, http: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not app_key or not app_secret:
            raise ConfigError("app_key and app_secret are required", key="app_key")
        self.api_url = api_url
        self.signer = JosSigner(app_key, app_secret, clock=clock)
        self.gate = AppGate.for_app(SYSTEM, api_url, app_key, qps)
        self.attempts, self.max_ban_wait, self.backoff_base = attempts, max_ban_wait, backoff_base
        self.rate_limit_cooldown = rate_limit_cooldown
        self.http = http or httpx.Client(timeout=timeout, headers={"User-Agent": "orderhub-jos/0.1"})

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, business: Mapping[str, Any], *, access_token: str | None = None,
             shop: str | None = None) -> dict[str, Any]:
        """Call ``method`` with ``business`` as ``360buy_param_json``; returns the body under ``*_responce``."""
        policy = retry_policy(attempts=self.attempts, base=self.backoff_base, max_ban_wait=self.max_ban_wait,
                              name=f"jd {method} shop={shop}")
        return call_with_retry(self._call_once, method, dict(business), access_token, shop, policy=policy)

    def _call_once(self, method: str, business: dict[str, Any], access_token: str | None,
                   shop: str | None) -> dict[str, Any]:
        form = {"method": method, "360buy_param_json": param_json(business)}
        if access_token:
            register_secret(access_token)
            form["access_token"] = access_token
        what, kw = f"jd {method}", {"system": SYSTEM, "shop": shop}
        with self.gate.turn(max_ban_wait=self.max_ban_wait, shop=shop):
            resp = post(self.http, self.api_url, data=form, auth=self.signer, what=what, **kw)
        body = json_object(resp, what=what, **kw)
        return router_body(
            resp, body, response_root(method),
            lambda err: jd_error(err, shop=shop, api=method, ban_seconds=self.rate_limit_cooldown),
            ban=self.gate.ban, what=what, **kw)

    # order APIs -------------------------------------------------------------------------------------------------
    def orders_page(self, access_token: str, start: datetime, end: datetime, page: int, *,
                    page_size: int = MAX_PAGE_SIZE, method: str = SEARCH, states: tuple[str, ...] = ALL_STATES,
                    shop: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page of ``jingdong.pop.order.search``/``enSearch`` by modification time (``dateType`` ≠ 1),
        newest first (``sortType=1``). Returns ``(orders, orderTotal)``; ``apiResult.success=false`` raises."""
        if method not in ORDER_APIS:
            raise ConfigError(f"order_api must be one of {', '.join(ORDER_APIS)}", key="order_api")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be 1..{MAX_PAGE_SIZE}", key="page_size")
        if end > add_month(start):
            raise ConfigError("a JOS order window is at most 1 month", key="window_days")
        body = self.call(method, {
            "start_date": jd_time(start), "end_date": jd_time(end), "order_state": ",".join(states),
            "optional_fields": ",".join(OPTIONAL_FIELDS), "page": str(page), "page_size": str(page_size),
            "sortType": "1", "dateType": "0",
        }, access_token=access_token, shop=shop)
        result = body.get("searchorderinfo_result") or {}
        api_result = result.get("apiResult") or {}
        if api_result and not api_result.get("success", True):
            raise RemoteBusinessError(
                f"jd shop {shop}: {method} refused: {api_result.get('chineseErrCode') or ''} "
                f"{api_result.get('englishErrCode') or ''}".strip(),
                remote_code=str(api_result.get("numberCode", "")), system=SYSTEM, shop=shop)
        return list(result.get("orderInfoList") or []), int(result.get("orderTotal") or 0)

    def fetch_window(self, access_token: str, start: datetime, end: datetime, *, page_size: int = MAX_PAGE_SIZE,
                     method: str = SEARCH, shop: str | None = None) -> list[dict[str, Any]]:
        """Every order modified in ``[start, end]``, latest version of each, oldest first (paged backwards)."""
        rows = page_backwards(
            lambda p: self.orders_page(access_token, start, end, p, page_size=page_size, method=method, shop=shop),
            page_size)
        latest: dict[str, dict[str, Any]] = {}
        for o in rows:
            key = str(o.get("orderId"))
            if key not in latest or str(o.get("modified", "")) >= str(latest[key].get("modified", "")):
                latest[key] = o
        return sorted(latest.values(), key=lambda o: (str(o.get("modified", "")), str(o.get("orderId"))))
