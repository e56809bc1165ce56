"""The canonical order (标准订单): one versioned shape for every order from every channel and ERP.

Python code passes canonical orders around as plain dicts (fast, and what Singer records are); this module
defines their fields, exports the JSON Schema that is also the Singer schema of the ``canonical_orders``
stream, and derives the stable canonical order id.
"""
from __future__ import annotations

import hashlib
from typing import Any

SCHEMA_VERSION = "1.0"
STREAM = "canonical_orders"

_money = {"type": ["number", "null"], "description": "Decimal, CNY (元)"}
_time = {"type": ["string", "null"], "format": "date-time", "description": "ISO-8601 with offset"}
_str = {"type": ["string", "null"]}
_bool = {"type": ["boolean", "null"]}


def _s(desc: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    out = dict(base or _str)
    out["description"] = desc
    return out


LINE_FIELDS: dict[str, dict[str, Any]] = {
    "line_no": _s("line number within the order (行号)", {"type": ["integer", "null"]}),
    "source_line_id": _s("the source's line id (子订单号 oid / 分录ID)"),
    "canonical_sku": _s("canonical SKU code after alias folding (标准物料编码)"),
    "source_sku": _s("SKU as the source gave it (原始商品编码)"),
    "sku_name": _s("product name (商品名称)"),
    "qty": _s("quantity (数量), Decimal > 0", {"type": "number"}),
    "unit_price": _s("unit price (单价), CNY", _money),
    "amount": _s("line amount (金额), CNY", _money),
    "is_gift": _s("gift line (赠品)", _bool),
    "line_status": _s("canonical status of the line", _str),
    "source_line_status": _s("raw line status from the source", _str),
    "refund_status": _s("line refund/return state: none, refund_requested, returning, returned, refunded, "
                        "refund_rejected, refund_cancelled (退款/退货状态)", _str),
}

HEADER_FIELDS: dict[str, dict[str, Any]] = {
    "order_id": _s("canonical order id, stable across runs: hash of (source system, shop, source order id)",
                   {"type": "string"}),
    "schema_version": _s("canonical schema version", {"type": "string"}),
    "source_system": _s("source system name, e.g. taobao, erp-main (来源系统)", {"type": "string"}),
    "channel": _s("sales channel: taobao, tmall, jd, 1688, douyin, erp, file, wechat, phone (渠道)"),
    "shop_id": _s("shop / account / company book the order was read from (店铺/账套)"),
    "source_order_id": _s("the source's order id (原始订单号)", {"type": "string"}),
    "order_type": _s("order type, e.g. normal, presale, sample (订单类型)"),
    "status": _s("canonical status (标准状态)", {"type": "string"}),
    "source_status": _s("raw source status, kept beside the canonical one (原始状态)"),
    "source_hold": _s("the source says do not ship (平台锁单/禁止发货)", _bool),
    "created_at": _s("order created (下单时间)", _time),
    "paid_at": _s("paid (付款时间)", _time),
    "updated_at": _s("last modified at the source (修改时间)", _time),
    "shipped_at": _s("shipped (发货时间)", _time),
    "customer_id": _s("customer code / buyer id (客户编码)"),
    "customer_name": _s("customer name (客户名称)"),
    "customer_level": _s("customer level, e.g. vip (客户等级)"),
    "receiver_name": _s("receiver name, masked as the platform gives it (收货人)"),
    "receiver_mobile": _s("receiver mobile, masked as the platform gives it (手机)"),
    "receiver_phone": _s("receiver landline (电话)"),
    "receiver_province": _s("province (省)"),
    "receiver_city": _s("city (市)"),
    "receiver_district": _s("district / county (区县)"),
    "receiver_town": _s("town / street (街道)"),
    "receiver_address": _s("detailed address (详细地址)"),
    "receiver_zip": _s("postcode (邮编)"),
    "privacy_id": _s("platform privacy handle for later decryption, e.g. Taobao OAID (隐私ID)"),
    "currency": _s("always CNY (币种)"),
    "total_amount": _s("order total payable (订单总额)", _money),
    "goods_amount": _s("sum of line amounts (商品金额)", _money),
    "shipping_fee": _s("shipping fee (运费)", _money),
    "discount_amount": _s("discount (优惠)", _money),
    "paid_amount": _s("amount paid (实付)", _money),
    "special_requirements": _s("buyer message / remark / special requirements (买家留言/特殊要求)"),
    "seller_memo": _s("seller memo (卖家备注)"),
    "is_urgent": _s("urgent (加急)", _bool),
    "has_gift": _s("contains a gift (含赠品)", _bool),
    "needs_invoice": _s("invoice requested (需开票)", _bool),
    "invoice_title": _s("invoice title (发票抬头)"),
    "warehouse_hint": _s("warehouse requested by the source (指定仓库)"),
    "mapping_version": _s("source mapping name@version that produced this order"),
    "raw_hash": _s("hash of the raw source record"),
    "held": _s("held by the rules: does not flow on to ERP/WMS (挂起)", _bool),
    "hold_reasons": {"type": ["array", "null"], "description": "why the order is held",
                     "items": {"type": "object", "properties": {"code": {"type": "string"},
                                                                 "message": {"type": "string"}}}},
    "warehouse_code": _s("warehouse chosen by routing (发货仓)"),
    "priority": _s("urgent | high | normal (优先级)"),
    "merge_hint": _s("merge group key when the same receiver placed several orders (合单提示)"),
    "ruleset_version": _s("rule set name@version of the decision"),
}

REQUIRED = ["order_id", "source_system", "source_order_id", "status", "lines"]

#: The longest text the hub keeps per source field (characters: its VARCHAR widths); longer is a record error.
MAX_CHARS = {"shop_id": 128, "source_order_id": 128, "order_type": 32, "source_status": 64, "customer_id": 128,
             "customer_name": 255, "customer_level": 32, "receiver_name": 255, "receiver_mobile": 64,
             "receiver_phone": 64, "receiver_province": 64, "receiver_city": 64, "receiver_district": 64,
             "receiver_town": 64, "receiver_zip": 16, "privacy_id": 255, "invoice_title": 255, "warehouse_hint": 64}
LINE_MAX_CHARS = {"source_line_id": 128, "canonical_sku": 128, "source_sku": 128, "sku_name": 255,
                  "source_line_status": 64}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a canonical order; also the Singer schema of the ``canonical_orders`` stream."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://orderhub.dev/schema/canonical-order/{SCHEMA_VERSION}",
        "title": "Canonical order (标准订单)",
        "type": "object",
        "properties": {
            **HEADER_FIELDS,
            "lines": {"type": "array", "description": "order lines (订单行)",
                      "items": {"type": "object", "properties": LINE_FIELDS, "required": ["qty"]}},
        },
        "required": REQUIRED,
    }


def canonical_order_id(source_system: str, shop_id: str | None, source_order_id: str) -> str:
    """Stable id: the same (source system, shop, source order id) always gives the same id, in any run."""
    key = f"{source_system}\x1f{shop_id or ''}\x1f{source_order_id}".encode()
    return "o_" + hashlib.blake2b(key, digest_size=12).hexdigest()


_TIME_FIELDS = ("created_at", "paid_at", "updated_at", "shipped_at")


def to_record(order: dict) -> dict:
    """A canonical order as a JSON-ready Singer record: times as ISO-8601 with offset, Decimals kept (writers
    serialise them as exact JSON numbers). Internal hub-only keys are dropped."""
    out = {k: order.get(k) for k in HEADER_FIELDS}
    for k in _TIME_FIELDS:
        v = out.get(k)
        if v is not None and not isinstance(v, str):
            out[k] = v.isoformat()
    out["lines"] = [{k: ln.get(k) for k in LINE_FIELDS} for ln in order.get("lines") or ()]
    return out


def from_record(record: dict) -> dict:
    """Inverse of :func:`to_record` for targets: ISO times back to aware datetimes, numbers to Decimal."""
    from datetime import datetime
    from decimal import Decimal

    out = dict(record)
    for k in _TIME_FIELDS:
        v = out.get(k)
        if isinstance(v, str):
            out[k] = datetime.fromisoformat(v)
    for k in ("total_amount", "goods_amount", "shipping_fee", "discount_amount", "paid_amount"):
        v = out.get(k)
        if v is not None and not isinstance(v, Decimal):
            out[k] = Decimal(str(v))
    lines = []
    for ln in out.get("lines") or ():
        ln = dict(ln)
        for k in ("qty", "unit_price", "amount"):
            v = ln.get(k)
            if v is not None and not isinstance(v, Decimal):
                ln[k] = Decimal(str(v))
        lines.append(ln)
    out["lines"] = lines
    return out
