"""QIMEN (奇门) standard WMS client: signed XML requests, ``<response>`` parsing, error classification.

Protocol (reference §5): system parameters in the query string, an XML ``<request>`` as the raw body, and
``sign = UPPER(MD5(secret + Σ sorted(name+value) + body + secret))`` over exactly the body bytes sent
(QIMEN doc "签名规则", jaq-doc articleId=118404). The answer is ``<response><flag/><code/><message/>…``;
``flag`` is the only field to trust. Stands alone: no singer-sdk, no Prefect.
"""
from __future__ import annotations

import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import quote, urlencode, urlsplit

import httpx

from orderhub.connectors.common.errors import (
    AuthError,
    BadRequestError,
    ConfigError,
    ConnectorError,
    MalformedResponse,
    PermissionDenied,
    RateLimitedError,
    RemoteBusinessError,
    ServerError,
    SignatureError,
)
from orderhub.connectors.common.http import post
from orderhub.connectors.common.privacy import mask_text
from orderhub.connectors.common.ratelimit import TokenBucket
from orderhub.connectors.common.retry import call_with_retry, retry_policy
from orderhub.connectors.common.secrets import register_secret

log = logging.getLogger("orderhub.qimen")

SYSTEM = "qimen"
FULL_PREFIX = "taobao.qimen."
CST = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'

# XML 1.0 cannot carry these characters at all, escaped or not (XML 1.0 §2.2 "Char").
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# Receiver codes are not standardised across WMSs (reference §5.4); these are the ones seen in the wild
# plus the TOP gateway's own (reference §1.5), grouped by what the caller should do.
SIGN_CODES = {"sign-check-failure", "isv.invalid-signature", "invalid-signature", "25"}
AUTH_CODES = {"isv.appkey-not-exists", "invalid-appkey", "isv.invalid-customerid", "invalid-customerid", "29",
              "11"}
RATE_CODES = {"7", "isv.api-call-limited", "app call limited"}
BAD_REQUEST_CODES = {"30033", "30002", "40030", "invalid-timestamp", "isv.invalid-timestamp", "invalid-method",
                     "isv.invalid-method", "invalid-format", "missing-parameter", "invalid-parameter", "21", "22",
                     "40", "41"}
BAD_REQUEST_PREFIXES = ("isv.missing-parameter", "isv.invalid-parameter", "missing-parameter",
                        "invalid-parameter", "isv.parameters-mismatch")
SERVER_CODES = {"system-error", "service-unavailable", "15", "10"}
# A repeated deliveryOrderCode: most WMSs answer success with the existing id (reference §5.4), some answer
# failure with a "duplicate" code or message. Both mean: the WMS already has this order.
DUPLICATE_CODES = {"order-exists", "duplicate", "duplicate-order", "deliveryorder-exists", "order_exists",
                   "duplicate_order"}
_DUPLICATE_WORDS = ("already exist", "duplicate", "已存在", "重复", "单据存在")


def sign(secret: str, params: Mapping[str, Any], body: bytes | str) -> str:
    """QIMEN request signature (reference §5.2, vector V11).

    ``UPPER(MD5(secret + Σ(name+value for params sorted by name, without sign and empty values) + body +
    secret))``; ``body`` must be the exact bytes sent.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    joined = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "sign" and params[k] not in (None, ""))
    digest = hashlib.md5()
    digest.update(secret.encode("utf-8"))
    digest.update(joined.encode("utf-8"))
    digest.update(raw)
    digest.update(secret.encode("utf-8"))
    return digest.hexdigest().upper()


def format_timestamp(when: datetime | None = None) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8, the QIMEN/TOP timestamp (reference §5.1)."""
    when = when or datetime.now(CST)
    if when.tzinfo is None:
        when = when.replace(tzinfo=CST)
    return when.astimezone(CST).strftime(TIMESTAMP_FORMAT)


# --- XML helpers ------------------------------------------------------------------------------------------------
def xml_text(value: Any) -> str:
    """Text for an XML element: str() of the value, with characters XML 1.0 cannot carry removed.
    Markup characters (``< > & " '``) are escaped by ElementTree on serialisation, never here."""
    if isinstance(value, bool):
        return "Y" if value else "N"
    return _XML_ILLEGAL.sub("", str(value))


def add(parent: ET.Element, tag: str, value: Any = None) -> ET.Element | None:
    """Append ``<tag>value</tag>`` unless ``value`` is None/empty; dicts become nested elements."""
    if value is None or value == "" or value == {}:
        return None
    el = ET.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for k, v in value.items():
            add(el, k, v)
        if len(el) == 0:
            parent.remove(el)
            return None
    else:
        el.text = xml_text(value)
    return el


def to_body(request: ET.Element) -> bytes:
    """Serialise a ``<request>`` element: declaration + UTF-8, every value escaped by ElementTree."""
    return (XML_DECLARATION + ET.tostring(request, encoding="unicode")).encode("utf-8")


def element_to_dict(el: ET.Element) -> Any:
    """Leaf → its text ('' when empty); element with children → dict; a repeated child tag → list."""
    if len(el) == 0:
        return el.text or ""
    out: dict[str, Any] = {}
    for child in el:
        value = element_to_dict(child)  # always a str or a dict, so a list here means "repeated tag"
        if child.tag not in out:
            out[child.tag] = value
        elif isinstance(out[child.tag], list):
            out[child.tag].append(value)
        else:
            out[child.tag] = [out[child.tag], value]
    return out


def children(el: ET.Element | None, path: str) -> list[ET.Element]:
    return [] if el is None else el.findall(path)


# --- responses ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QimenResponse:
    """A parsed ``<response>``. ``root`` keeps the whole document for method-specific fields."""

    flag: str
    code: str
    message: str
    root: ET.Element

    @property
    def ok(self) -> bool:
        return self.flag == "success"

    def text(self, path: str) -> str | None:
        el = self.root.find(path)
        return None if el is None else (el.text or "").strip()


@dataclass(frozen=True)
class DeliveryOrderResult:
    """Answer to ``deliveryorder.create``. ``duplicate`` is true when the WMS already had the code."""

    delivery_order_code: str
    delivery_order_id: str | None
    duplicate: bool
    warehouse_code: str | None
    logistics_code: str | None
    message: str


def parse_response(content: bytes) -> QimenResponse:
    """Parse a QIMEN answer; the TOP gateway's ``<error_response>`` is mapped to the same shape."""
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise MalformedResponse(f"QIMEN answer is not XML ({exc})", system=SYSTEM) from None
    if root.tag == "error_response":
        code = (root.findtext("sub_code") or root.findtext("code") or "").strip()
        msg = (root.findtext("sub_msg") or root.findtext("msg") or "").strip()
        return QimenResponse("failure", code, msg, root)
    if root.tag != "response":
        raise MalformedResponse(f"QIMEN answer has root <{root.tag}>, expected <response>", system=SYSTEM)
    flag = (root.findtext("flag") or "").strip().lower()
    if flag not in ("success", "failure"):
        raise MalformedResponse(f"QIMEN answer has flag {flag!r}, expected success or failure", system=SYSTEM)
    return QimenResponse(flag, (root.findtext("code") or "").strip(), (root.findtext("message") or "").strip(),
                         root)


def is_duplicate_answer(resp: QimenResponse) -> bool:
    """True when the answer says the deliveryOrderCode is already known (reference §5.4, §5.7)."""
    msg = resp.message.lower()
    return resp.code.lower() in DUPLICATE_CODES or any(w in msg for w in _DUPLICATE_WORDS)


def is_not_found(exc: RemoteBusinessError) -> bool:
    """A query answered "no such order" (codes are not standardised; reference §5.4)."""
    text = f"{exc.remote_code} {exc.message}".lower()
    return any(w in text for w in ("not-found", "not found", "not exist", "不存在"))


def classify_failure(resp: QimenResponse, method: str, *, customer_id: str | None = None) -> ConnectorError:
    """Turn ``flag=failure`` into the common error hierarchy (reference §5.4): signature and bad parameters
    are permanent, gateway/server errors transient, anything else a business refusal by the WMS."""
    code, low = resp.code, resp.code.lower()
    msg = mask_text(resp.message)
    what = f"QIMEN {method} refused (code {code or '-'}): {msg}"
    kw: dict[str, Any] = {"system": SYSTEM, "shop": customer_id}
    if low in SIGN_CODES or "sign" in low:
        return SignatureError(f"{what}. The WMS could not verify our signature: check app_secret (and whether "
                              f"the WMS expects the full or short method name)", **kw)
    if low in AUTH_CODES:
        return AuthError(f"{what}. Check app_key and customerId {customer_id!r} with the WMS", **kw)
    if low in RATE_CODES or low.startswith("accesscontrol.limited"):
        return RateLimitedError(what, **kw)
    if low.startswith("isp.") or low in SERVER_CODES:
        return ServerError(what, **kw)
    if low.startswith("isv.permission") or low in {"insufficient-isv-permissions", "insufficient-user-permissions"}:
        return PermissionDenied(what, **kw)
    if low in BAD_REQUEST_CODES or low.startswith(BAD_REQUEST_PREFIXES):
        return BadRequestError(what, **kw)
    return RemoteBusinessError(what, remote_code=code, **kw)


# --- the client --------------------------------------------------------------------------------------------------
class QimenClient:
    """ERP-side QIMEN client (reference §5). One instance per WMS customer (``customerId``).

    ``method_style="full"`` sends ``taobao.qimen.deliveryorder.create`` (through the QIMEN gateway);
    ``"short"`` sends ``deliveryorder.create`` (WMS receivers that dispatch on the short name, §5.1).
    Every call is re-signed with a fresh timestamp, and retried under the common policy when the error is
    transient; ``deliveryorder.create`` is safe to retry because the WMS dedupes on deliveryOrderCode.
    """

    def __init__(self, url: str, app_key: str, app_secret: str, customer_id: str, *,
                 method_style: str = "full", version: str = "2.0", timeout: float = 15.0,
                 retry_attempts: int = 4, retry_base: float = 0.5, retry_cap: float = 10.0,
                 max_qps: float | None = None, target_app_key: str | None = None,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{url!r} is not an http(s) URL", key="url")
        if method_style not in ("full", "short"):
            raise ConfigError("must be 'full' (taobao.qimen.x) or 'short' (x)", key="method_style")
        for key, value in (("app_key", app_key), ("app_secret", app_secret), ("customer_id", customer_id)):
            if not value:
                raise ConfigError("is required", key=key)
        register_secret(app_secret)
        self.url = url
        self.app_key = app_key
        self._secret = app_secret
        self.customer_id = customer_id
        self.method_style = method_style
        self.version = version
        self.target_app_key = target_app_key
        self.retry_attempts = retry_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._bucket = TokenBucket(max_qps, max(1, int(max_qps))) if max_qps else None
        self._clock = clock or (lambda: datetime.now(CST))
        self._http = httpx.Client(timeout=timeout, transport=transport,
                                  headers={"Content-Type": "application/xml;charset=UTF-8"})

    # -- plumbing --
    def method_name(self, short: str) -> str:
        short = short.removeprefix(FULL_PREFIX)
        return FULL_PREFIX + short if self.method_style == "full" else short

    def signed_params(self, method: str, body: bytes) -> dict[str, str]:
        """System parameters for one call, with ``sign`` over them and ``body`` (reference §5.1, §5.2)."""
        params = {"method": self.method_name(method), "timestamp": format_timestamp(self._clock()),
                  "format": "xml", "app_key": self.app_key, "v": self.version, "sign_method": "md5",
                  "customerId": self.customer_id}
        if self.target_app_key:
            params["target_app_key"] = self.target_app_key
        params["sign"] = sign(self._secret, params, body)
        return params

    def call(self, method: str, request: ET.Element) -> QimenResponse:
        """POST one signed request, retrying transient failures; a ``flag=failure`` answer is raised as the
        classified error (for ``deliveryorder.create``, a "duplicate" answer is returned, not raised)."""
        policy = retry_policy(attempts=self.retry_attempts, base=self.retry_base, cap=self.retry_cap,
                              name=f"qimen {method}")
        return call_with_retry(self._call_once_checked, method, to_body(request), policy=policy)

    def _call_once(self, method: str, body: bytes) -> QimenResponse:
        if self._bucket is not None:
            self._bucket.acquire()
        params = self.signed_params(method, body)
        url = f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(params, quote_via=quote)}"
        kw: dict[str, Any] = {"system": SYSTEM, "shop": self.customer_id}
        r = post(self._http, url, content=body, what=f"QIMEN {method} to {urlsplit(self.url).netloc}", **kw)
        if r.status_code == 429:
            retry_after = r.headers.get("Retry-After")
            raise RateLimitedError(f"QIMEN {method}: HTTP 429",
                                   retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
                                   **kw)
        if r.status_code >= 500:
            raise ServerError(f"QIMEN {method}: HTTP {r.status_code} from {urlsplit(self.url).netloc}", **kw)
        if r.status_code >= 400:
            raise BadRequestError(f"QIMEN {method}: HTTP {r.status_code} from {urlsplit(self.url).netloc}", **kw)
        resp = parse_response(r.content)
        log.debug("qimen %s -> flag=%s code=%s", method, resp.flag, resp.code)
        return resp

    def _call_once_checked(self, method: str, body: bytes) -> QimenResponse:
        resp = self._call_once(method, body)
        if not resp.ok and not (method == "deliveryorder.create" and is_duplicate_answer(resp)):
            raise classify_failure(resp, method, customer_id=self.customer_id)
        return resp

    # -- API --
    def create_delivery_order(self, request: ET.Element) -> DeliveryOrderResult:
        """``deliveryorder.create`` (发货单创建, reference §5.3/§5.4). A repeated deliveryOrderCode is a
        success with ``duplicate=True`` and the WMS's existing deliveryOrderId, never a second order."""
        code = request.findtext("deliveryOrder/deliveryOrderCode") or ""
        resp = self.call("deliveryorder.create", request)
        return DeliveryOrderResult(
            delivery_order_code=code,
            delivery_order_id=resp.text("deliveryOrderId") or None,
            duplicate=is_duplicate_answer(resp),
            warehouse_code=resp.text("warehouseCode") or None,
            logistics_code=resp.text("logisticsCode") or None,
            message=mask_text(resp.message),
        )

    def query_delivery_order(self, delivery_order_code: str, *, owner_code: str | None = None,
                             warehouse_code: str | None = None) -> dict[str, Any] | None:
        """``deliveryorder.query`` (reference §5.5): the WMS's view of one order, or None if unknown."""
        req = ET.Element("request")
        add(req, "ownerCode", owner_code)
        add(req, "warehouseCode", warehouse_code)
        add(req, "orderCode", delivery_order_code)
        add(req, "page", 1)
        add(req, "pageSize", 100)
        try:
            resp = self.call("deliveryorder.query", req)
        except RemoteBusinessError as exc:
            if is_not_found(exc):
                return None
            raise
        order = resp.root.find("deliveryOrder")
        if order is None:
            return None
        out = element_to_dict(order)
        out["orderLines"] = [element_to_dict(x) for x in children(resp.root, "orderLines/orderLine")]
        return out

    def query_inventory(self, warehouse: str | None, skus: Iterable[str], *, owner_code: str | None = None,
                        inventory_type: str | None = "ZP", batch_size: int = 50) -> dict[str, Decimal]:
        """Available (未冻结 ``quantity``) stock per SKU in one warehouse via ``inventory.query``
        (库存查询接口(多商品), reference §5.6). Quantities of several batches are summed; a SKU the WMS does
        not return has 0 available. ``warehouse=None`` asks across all warehouses of the owner."""
        wanted = list(dict.fromkeys(s for s in skus if s))
        out = {sku: Decimal(0) for sku in wanted}
        for i in range(0, len(wanted), batch_size):
            req = ET.Element("request")
            crit = ET.SubElement(req, "criteriaList")
            for sku in wanted[i:i + batch_size]:
                c = ET.SubElement(crit, "criteria")
                add(c, "warehouseCode", warehouse)
                add(c, "ownerCode", owner_code)
                add(c, "itemCode", sku)
                add(c, "inventoryType", inventory_type)
            resp = self.call("inventory.query", req)
            for item in children(resp.root, "items/item"):
                sku = (item.findtext("itemCode") or "").strip()
                if sku not in out:
                    continue
                if warehouse and (item.findtext("warehouseCode") or "").strip() not in ("", warehouse):
                    continue
                if inventory_type and (item.findtext("inventoryType") or inventory_type).strip() != inventory_type:
                    continue
                raw = (item.findtext("quantity") or "0").strip()
                try:
                    out[sku] += Decimal(raw)
                except InvalidOperation:
                    raise MalformedResponse(f"QIMEN inventory.query: quantity {raw!r} of {sku} is not a number",
                                            system=SYSTEM) from None
        return out

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "QimenClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QimenClient(url={self.url!r}, app_key={self.app_key!r}, customer_id={self.customer_id!r})"
