"""Canonical order → QIMEN ``deliveryorder.create`` request (发货单创建, reference §5.3).

Pure: a canonical order dict in, an ``<request>`` element out (or a :class:`RecordError` naming the field).
Values go into the XML through ElementTree, so markup in a receiver address is escaped, never interpreted.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from orderhub.connectors.common.errors import ConfigError, RecordError
from orderhub.connectors.qimen.client import CST, TIMESTAMP_FORMAT, add

ORDER_TYPES = ("JYCK", "HHCK", "BFCK", "QTCK")
PRIORITIES = ("urgent", "high", "normal")
DEFAULT_ORDER_TYPE_MAP = {"normal": "JYCK", "presale": "JYCK", "sample": "QTCK", "exchange": "HHCK",
                          "reissue": "BFCK", "resend": "BFCK", "other": "QTCK"}
# canonical channel → sourcePlatformCode (reference §5.3; DY is what WMSs use for Douyin in practice)
DEFAULT_PLATFORM_CODES = {"taobao": "TB", "tmall": "TM", "jd": "JD", "1688": "1688", "alibaba1688": "1688",
                          "douyin": "DY", "pinduoduo": "PP", "vip": "WPH", "suning": "SN", "pos": "POS"}
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_\-]+$")
CODE_MAX = 50  # deliveryOrderCode is string(50)


def delivery_order_code(order_id: str, prefix: str = "") -> str:
    """The idempotency key sent as deliveryOrderCode: the same canonical order id always gives the same code.

    The canonical id itself (``o_…``) when it is plain ASCII and fits string(50); otherwise ``h_`` + a
    96-bit BLAKE2b digest of it."""
    if not order_id:
        raise RecordError("has no order_id; cannot derive a deliveryOrderCode", field="order_id")
    if _SAFE_CODE.match(order_id) and len(prefix) + len(order_id) <= CODE_MAX:
        return prefix + order_id
    return prefix + "h_" + hashlib.blake2b(order_id.encode("utf-8"), digest_size=12).hexdigest()


@dataclass
class DeliverySettings:
    """How canonical orders become delivery orders for one WMS owner (货主)."""

    owner_code: str
    logistics_code: str = "OTHER"                   # ⚑logisticsCode; OTHER = the WMS chooses the carrier
    sender: dict[str, str] = field(default_factory=dict)  # senderInfo: name, mobile, province, city, …
    shop_nick: str | None = None                    # ⚑shopNick; default: the order's shop_id
    default_warehouse_code: str | None = None       # used when routing gave none; OTHER = the WMS chooses
    order_type_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ORDER_TYPE_MAP))
    default_order_type: str = "JYCK"
    platform_codes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PLATFORM_CODES))
    urgent_priorities: tuple[str, ...] = ("urgent",)  # priorities sent as isUrgency=Y
    inventory_type: str = "ZP"
    code_prefix: str = ""
    skip_line_statuses: tuple[str, ...] = ("cancelled", "closed")
    skip_refund_statuses: tuple[str, ...] = ("refunded", "returned")

    def __post_init__(self) -> None:
        if not self.owner_code:
            raise ConfigError("is required (货主编码 issued by the WMS)", key="owner_code")
        bad = {k: v for k, v in self.order_type_map.items() if v not in ORDER_TYPES}
        if bad or self.default_order_type not in ORDER_TYPES:
            got = bad or self.default_order_type
            raise ConfigError(f"QIMEN orderType must be one of {', '.join(ORDER_TYPES)}; got {got}",
                              key="order_type_map")
        unknown = set(self.urgent_priorities) - set(PRIORITIES)
        if unknown:
            raise ConfigError(f"unknown priorities {sorted(unknown)}; use {PRIORITIES}", key="urgent_priorities")
        if len(self.code_prefix) > 20 or (self.code_prefix and not _SAFE_CODE.match(self.code_prefix)):
            raise ConfigError("must be at most 20 letters, digits, _ or -", key="code_prefix")


# --- value helpers -------------------------------------------------------------------------------------------------
def _time(value: Any, fld: str, order_id: str | None) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"{value!r} is not an ISO-8601 time", field=fld, record_id=order_id) from None
    if not isinstance(value, datetime):
        raise RecordError(f"expected a time, got {type(value).__name__}", field=fld, record_id=order_id)
    if value.tzinfo is None:
        raise RecordError("time has no UTC offset", field=fld, record_id=order_id)
    return value.astimezone(CST).strftime(TIMESTAMP_FORMAT)


def _decimal(value: Any, fld: str, order_id: str | None) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise RecordError(f"{value!r} is not a number", field=fld, record_id=order_id) from None
    if not d.is_finite():
        raise RecordError(f"{value!r} is not a finite number", field=fld, record_id=order_id)
    return d


def _money(value: Any, fld: str, order_id: str | None) -> str | None:
    d = _decimal(value, fld, order_id)
    return None if d is None else str(d.quantize(Decimal("0.01")))


def _required(order: Mapping[str, Any], fld: str, order_id: str | None, why: str) -> Any:
    value = order.get(fld)
    if value in (None, ""):
        raise RecordError(f"is empty; {why}", field=fld, record_id=order_id)
    return value


# --- the mapping ---------------------------------------------------------------------------------------------------
def shippable_lines(order: Mapping[str, Any], s: DeliverySettings) -> list[tuple[int, Mapping[str, Any]]]:
    """Lines the warehouse should ship: not cancelled/closed and not refunded/returned (by settings)."""
    out = []
    for i, line in enumerate(order.get("lines") or []):
        if not isinstance(line, Mapping):
            raise RecordError("is not an object", field=f"lines[{i}]", record_id=order.get("order_id"))
        if (line.get("line_status") or "") in s.skip_line_statuses:
            continue
        if (line.get("refund_status") or "") in s.skip_refund_statuses:
            continue
        out.append((i, line))
    return out


def build_delivery_order(order: Mapping[str, Any], s: DeliverySettings) -> ET.Element:
    """The ``<request>`` of ``deliveryorder.create`` for one canonical order (reference §5.3).

    deliveryOrderCode = :func:`delivery_order_code` (idempotency key); warehouseCode = the routing decision;
    isUrgency = Y for the priorities in ``urgent_priorities``, and the three-level priority travels in
    ``extendProps/priority``; special requirements go to ``remark`` (and ``buyerMessage``).
    Raises :class:`RecordError` naming the field when the order cannot become a delivery order.
    """
    oid = order.get("order_id")
    code = delivery_order_code(oid or "", s.code_prefix)
    warehouse = order.get("warehouse_code") or s.default_warehouse_code
    if not warehouse:
        raise RecordError("is empty: routing chose no warehouse and no default_warehouse_code is set",
                          field="warehouse_code", record_id=oid)
    priority = order.get("priority") or "normal"
    if priority not in PRIORITIES:
        raise RecordError(f"{priority!r} is not one of {', '.join(PRIORITIES)}", field="priority", record_id=oid)
    order_type = s.order_type_map.get(order.get("order_type") or "normal", s.default_order_type)
    created = _time(order.get("created_at"), "created_at", oid) or _time(order.get("paid_at"), "paid_at", oid)
    if created is None:
        raise RecordError("is empty; QIMEN needs createTime/placeOrderTime", field="created_at", record_id=oid)
    source_order_id = _required(order, "source_order_id", oid, "QIMEN orderLine.sourceOrderCode needs it")
    receiver = _receiver(order, oid)
    lines = shippable_lines(order, s)
    if not lines:
        raise RecordError("has no line left to ship (all cancelled, closed or refunded)", field="lines",
                          record_id=oid, code="no_shippable_lines")

    req = ET.Element("request")
    do = ET.SubElement(req, "deliveryOrder")
    add(do, "deliveryOrderCode", code)
    add(do, "orderType", order_type)
    add(do, "warehouseCode", warehouse)
    add(do, "sourcePlatformCode", s.platform_codes.get(order.get("channel") or "", "OTHER"))
    add(do, "sourcePlatformName", order.get("channel"))
    add(do, "createTime", created)
    add(do, "placeOrderTime", created)
    add(do, "payTime", _time(order.get("paid_at"), "paid_at", oid))
    add(do, "shopNick", s.shop_nick or order.get("shop_id") or order.get("source_system"))
    add(do, "buyerNick", order.get("customer_name") or order.get("customer_id"))
    add(do, "totalAmount", _money(order.get("total_amount"), "total_amount", oid))
    add(do, "itemAmount", _money(order.get("goods_amount"), "goods_amount", oid))
    add(do, "discountAmount", _money(order.get("discount_amount"), "discount_amount", oid))
    add(do, "freight", _money(order.get("shipping_fee"), "shipping_fee", oid))
    add(do, "gotAmount", _money(order.get("paid_amount"), "paid_amount", oid))
    add(do, "logisticsCode", s.logistics_code)
    add(do, "senderInfo", s.sender or {"name": s.shop_nick or s.owner_code})
    add(do, "receiverInfo", receiver)
    add(do, "isUrgency", "Y" if priority in s.urgent_priorities else "N")
    add(do, "invoiceFlag", "Y" if order.get("needs_invoice") else "N")
    add(do, "buyerMessage", order.get("special_requirements"))
    add(do, "sellerMessage", order.get("seller_memo"))
    add(do, "remark", order.get("special_requirements"))
    if order.get("privacy_id"):
        add(do, "oaidOrderSourceCode", source_order_id)  # the platform order no. the WMS decrypts OAID with
    add(do, "extendProps", {"orderhubOrderId": oid, "priority": priority,
                            "ruleset": order.get("ruleset_version"), "channel": order.get("channel")})

    ol = ET.SubElement(req, "orderLines")
    for n, (i, line) in enumerate(lines, start=1):
        el = ET.SubElement(ol, "orderLine")
        sku = line.get("canonical_sku")
        if not sku:
            raise RecordError("is empty: the SKU has no canonical code; add it to the SKU dictionary",
                              field=f"lines[{i}].canonical_sku", record_id=oid)
        qty = _decimal(line.get("qty"), f"lines[{i}].qty", oid)
        if qty is None or qty <= 0 or qty != qty.to_integral_value():
            raise RecordError(f"{line.get('qty')!r} is not a positive whole number (QIMEN planQty is an integer)",
                              field=f"lines[{i}].qty", record_id=oid)
        price = _money(line.get("unit_price"), f"lines[{i}].unit_price", oid)
        add(el, "orderLineNo", line.get("line_no") or n)
        add(el, "sourceOrderCode", source_order_id)
        add(el, "subSourceOrderCode", line.get("source_line_id"))
        add(el, "ownerCode", s.owner_code)
        add(el, "itemCode", sku)
        add(el, "inventoryType", s.inventory_type)
        add(el, "itemName", line.get("sku_name"))
        add(el, "planQty", int(qty))
        add(el, "actualPrice", "0.00" if line.get("is_gift") else (price or "0.00"))
        add(el, "retailPrice", price)
        if line.get("is_gift"):
            add(el, "extendProps", {"isGift": "Y"})
    return req


def _receiver(order: Mapping[str, Any], oid: str | None) -> dict[str, Any]:
    """receiverInfo (reference §5.3). Platform-masked values pass as given; ``oaid`` lets the WMS decrypt."""
    why = "the WMS cannot ship without it"
    name = _required(order, "receiver_name", oid, why)
    _required(order, "receiver_address", oid, why)
    if not (order.get("receiver_mobile") or order.get("receiver_phone") or order.get("privacy_id")):
        raise RecordError(f"is empty (and no receiver_phone or privacy_id); {why}", field="receiver_mobile",
                          record_id=oid)
    return {"name": name, "zipCode": order.get("receiver_zip"), "tel": order.get("receiver_phone"),
            "mobile": order.get("receiver_mobile"), "province": order.get("receiver_province"),
            "city": order.get("receiver_city"), "area": order.get("receiver_district"),
            "town": order.get("receiver_town"), "detailAddress": order.get("receiver_address"),
            "oaid": order.get("privacy_id")}
