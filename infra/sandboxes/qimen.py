"""Sandbox QIMEN (奇门) WMS: the receiving side of ``deliveryorder.create`` / ``deliveryorder.query`` /
``inventory.query`` (reference §5.7).

It verifies the signature exactly (MD5 over the sorted query parameters plus the raw body bytes, §5.2) and
the timestamp, accepts the method with or without the ``taobao.qimen.`` prefix (§5.1), validates the required
fields of a delivery order (§5.3), stores delivery orders in ``app.delivery_orders`` keyed by deliveryOrderCode,
answers a repeated code as WMSs do (success + the existing deliveryOrderId, §5.4), and serves stock per
warehouse/SKU. ``app.outage = True`` makes every call a 503; ``app.faults`` injects random faults.
"""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from orderhub.infra.sandboxes.base import Faults, Request, Response, SandboxApp

CST = timezone(timedelta(hours=8))
PREFIX = "taobao.qimen."
ORDER_TYPES = {"JYCK", "HHCK", "BFCK", "QTCK"}
INVENTORY_TYPES = {"ZP", "CC", "JS", "XS", "ZT"}

# ⚑ fields of deliveryorder.create (reference §5.3). "official": confirmed on the official API page;
# "spec": the QIMEN 2.x required set as WMSs commonly implement it (the default here).
REQUIRED_OFFICIAL = {"deliveryOrder": ["deliveryOrderCode", "orderType", "warehouseCode", "createTime"],
                     "orderLine": ["itemCode", "planQty"], "receiverInfo": ["name", "detailAddress"]}
REQUIRED_SPEC = {"deliveryOrder": ["deliveryOrderCode", "orderType", "warehouseCode", "createTime", "placeOrderTime",
                                   "shopNick", "logisticsCode", "senderInfo", "receiverInfo"],
                 "orderLine": ["sourceOrderCode", "ownerCode", "itemCode", "planQty", "actualPrice"],
                 "receiverInfo": ["name", "detailAddress"]}
DEFAULT_STOCK = {("WH-SH", "SKU-001"): 100, ("WH-SH", "SKU-002"): 40, ("WH-GZ", "SKU-001"): 25,
                 ("WH-GZ", "SKU-003"): 10}


def qimen_sign(secret: str, params: dict[str, str], body: bytes) -> str:
    """The WMS's own computation of the QIMEN sign (kept separate from the client's on purpose)."""
    text = "".join(k + params[k] for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5(secret.encode() + text.encode() + body + secret.encode()).hexdigest().upper()


@dataclass
class Received:
    """One request as it reached the sandbox, for tests that check the exact bytes."""

    query: dict[str, str]
    body: bytes
    headers: dict[str, str]


class _Reject(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _dict(el: ET.Element) -> Any:
    if len(el) == 0:
        return el.text or ""
    out: dict[str, Any] = {}
    for child in el:
        v = _dict(child)
        if child.tag not in out:
            out[child.tag] = v
        elif isinstance(out[child.tag], list):
            out[child.tag].append(v)
        else:
            out[child.tag] = [out[child.tag], v]
    return out


def _xml(tag: str, value: Any) -> ET.Element:
    el = ET.Element(tag)
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, list):
                for item in v:
                    el.append(_xml(k, item))
            elif v is not None:
                el.append(_xml(k, v))
    else:
        el.text = str(value)
    return el


def _response(flag: str, code: str, message: str, **extra: Any) -> Response:
    root = _xml("response", {"flag": flag, "code": code, "message": message, **extra})
    body = '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")
    return Response(200, body, "text/xml;charset=UTF-8")


class QimenWms(SandboxApp):
    name = "qimen"

    def __init__(self, *, app_key: str = "testerp_appkey", app_secret: str = "test",
                 customer_id: str | None = "stub-cust-code", check_timestamp: bool = True,
                 timestamp_tolerance: float = 600.0, required: str = "spec", duplicate_style: str = "success",
                 stock: dict[tuple[str, str], Any] | None = None, faults: Faults | None = None,
                 clock: Callable[[], datetime] | None = None, keep_received: int = 1000) -> None:
        super().__init__(faults)
        if required not in ("spec", "official"):
            raise ValueError("required must be 'spec' or 'official'")
        if duplicate_style not in ("success", "failure"):
            raise ValueError("duplicate_style must be 'success' or 'failure'")
        self.app_key, self.app_secret, self.customer_id = str(app_key), str(app_secret), customer_id
        self.check_timestamp, self.timestamp_tolerance = check_timestamp, float(timestamp_tolerance)
        self.required = REQUIRED_SPEC if required == "spec" else REQUIRED_OFFICIAL
        self.duplicate_style = duplicate_style
        self.clock = clock or (lambda: datetime.now(CST))
        self.outage = False
        self.delivery_orders: dict[str, dict[str, Any]] = {}
        self.create_calls = 0                       # deliveryorder.create requests that passed the signature
        self.create_calls_by_code: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()       # per short method name, including rejected ones
        self.received: deque[Received] = deque(maxlen=keep_received)
        self.on_create: Callable[[str, dict[str, Any]], None] | None = None  # test hook, after storing
        self._seq = 0
        # (warehouseCode, itemCode, inventoryType) -> [quantity, lockQuantity]
        self.stock: dict[tuple[str, str, str], list[Decimal]] = {}
        for (wh, sku), qty in (DEFAULT_STOCK if stock is None else stock).items():
            self.set_stock(wh, sku, qty)

    # -- test helpers --
    def set_stock(self, warehouse: str, sku: str, quantity: Any, lock_quantity: Any = 0,
                  inventory_type: str = "ZP") -> None:
        with self.lock:
            self.stock[(warehouse, sku, inventory_type)] = [Decimal(str(quantity)), Decimal(str(lock_quantity))]

    def reset(self) -> None:
        """Forget every delivery order, counter and captured request (stock and settings stay)."""
        with self.lock:
            self.delivery_orders.clear()
            self.create_calls = 0
            self.create_calls_by_code.clear()
            self.calls.clear()
            self.received.clear()
            self.outage = False

    def order(self, code: str) -> dict[str, Any] | None:
        with self.lock:
            return self.delivery_orders.get(code)

    # -- HTTP --
    def handle(self, req: Request) -> Response:
        with self.lock:
            self.received.append(Received(dict(req.query), req.body, dict(req.headers)))
        if self.outage:
            return Response(503, "<html>503 Service Temporarily Unavailable</html>", "text/html")
        q = req.query
        method = (q.get("method") or "").removeprefix(PREFIX)
        with self.lock:
            self.calls[method or "?"] += 1
        try:
            self._check_envelope(req)
            try:
                root = ET.fromstring(req.body)
            except ET.ParseError:
                raise _Reject("30033", "request body is not XML") from None
            if root.tag != "request":
                raise _Reject("30033", f"root element is <{root.tag}>, expected <request>")
            handler = {"deliveryorder.create": self._create, "deliveryorder.query": self._query,
                       "inventory.query": self._inventory}.get(method)
            if handler is None:
                raise _Reject("30002", f"invalid method {q.get('method')!r}")
            return handler(root, req.body)
        except _Reject as rej:
            return _response("failure", rej.code, rej.message)

    def _check_envelope(self, req: Request) -> None:
        q = req.query
        if req.method != "POST":
            raise _Reject("invalid-method", "QIMEN calls are POST")
        for key in ("method", "timestamp", "format", "app_key", "v", "sign", "sign_method"):
            if not q.get(key):
                raise _Reject("missing-parameter", f"system parameter {key} is missing")
        if q["app_key"] != self.app_key:
            raise _Reject("invalid-appkey", "invalid appkey")
        if self.customer_id is not None and q.get("customerId") != self.customer_id:
            raise _Reject("invalid-customerId", "unknown customerId")
        if q["format"] != "xml" or q["sign_method"] != "md5":
            raise _Reject("invalid-format", "only format=xml and sign_method=md5 are supported")
        if qimen_sign(self.app_secret, q, req.body) != q["sign"]:
            raise _Reject("sign-check-failure", "Illegal request")
        if self.check_timestamp:
            try:
                ts = datetime.strptime(q["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
            except ValueError:
                raise _Reject("invalid-timestamp", "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8)") from None
            if abs((self.clock() - ts).total_seconds()) > self.timestamp_tolerance:
                raise _Reject("invalid-timestamp", "timestamp is out of the allowed window")

    # -- deliveryorder.create (reference §5.3, §5.4) --
    def _create(self, root: ET.Element, body: bytes) -> Response:
        do = root.find("deliveryOrder")
        if do is None:
            raise _Reject("missing-parameter", "deliveryOrder is required")
        self._require(do, "deliveryOrder", "deliveryOrder")
        receiver = do.find("receiverInfo")
        if receiver is not None:
            self._require(receiver, "receiverInfo", "deliveryOrder.receiverInfo")
            if not any((receiver.findtext(k) or "").strip() for k in ("mobile", "tel", "oaid")):
                raise _Reject("missing-parameter", "deliveryOrder.receiverInfo.mobile (or tel/oaid) is required")
        code = (do.findtext("deliveryOrderCode") or "").strip()
        if len(code) > 50:
            raise _Reject("invalid-parameter", "deliveryOrder.deliveryOrderCode is longer than 50")
        if do.findtext("orderType") not in ORDER_TYPES:
            raise _Reject("invalid-parameter", f"deliveryOrder.orderType {do.findtext('orderType')!r} is unknown")
        if (do.findtext("isUrgency") or "N") not in ("Y", "N"):
            raise _Reject("invalid-parameter", "deliveryOrder.isUrgency must be Y or N")
        lines = root.findall("orderLines/orderLine")
        if not lines:
            raise _Reject("missing-parameter", "orderLines is required")
        for i, line in enumerate(lines):
            self._require(line, "orderLine", f"orderLines.orderLine[{i}]")
            qty = line.findtext("planQty") or ""
            if not qty.isdigit() or int(qty) <= 0:
                raise _Reject("invalid-parameter", f"orderLines.orderLine[{i}].planQty must be a positive integer")
        with self.lock:
            self.create_calls += 1
            self.create_calls_by_code[code] += 1
            existing = self.delivery_orders.get(code)
            if existing is None:
                self._seq += 1
                stored = {"deliveryOrderId": f"DO{self._seq:010d}", "deliveryOrder": _dict(do),
                          "orderLines": [_dict(x) for x in lines],
                          "extendProps": _dict(root.find("extendProps")) if root.find("extendProps") is not None
                          else {}, "status": "NEW", "createdAt": self.clock().strftime("%Y-%m-%d %H:%M:%S"),
                          "body": body}
                self.delivery_orders[code] = stored
        if existing is not None:
            msg = f"deliveryOrderCode {code} already exists"
            if self.duplicate_style == "failure":
                return _response("failure", "order-exists", "单据已存在: " + msg,
                                 deliveryOrderId=existing["deliveryOrderId"])
            return _response("success", "0", msg, deliveryOrderId=existing["deliveryOrderId"],
                             warehouseCode=existing["deliveryOrder"].get("warehouseCode"))
        if self.on_create is not None:
            self.on_create(code, stored)
        return _response("success", "0", "success", createTime=stored["createdAt"],
                         deliveryOrderId=stored["deliveryOrderId"],
                         warehouseCode=stored["deliveryOrder"].get("warehouseCode"),
                         logisticsCode=stored["deliveryOrder"].get("logisticsCode"))

    def _require(self, el: ET.Element, kind: str, where: str) -> None:
        for name in self.required.get(kind, []):
            child = el.find(name)
            if child is None or (len(child) == 0 and not (child.text or "").strip()):
                raise _Reject("missing-parameter", f"{where}.{name} is required")

    # -- deliveryorder.query (reference §5.5) --
    def _query(self, root: ET.Element, body: bytes) -> Response:
        code = (root.findtext("orderCode") or "").strip()
        if not code:
            raise _Reject("missing-parameter", "orderCode is required")
        stored = self.order(code)
        if stored is None:
            raise _Reject("order-not-found", f"delivery order {code} does not exist")
        d = stored["deliveryOrder"]
        head = {"deliveryOrderCode": code, "deliveryOrderId": stored["deliveryOrderId"],
                "warehouseCode": d.get("warehouseCode"), "orderType": d.get("orderType"), "status": stored["status"]}
        return _response("success", "0", "success", deliveryOrder=head,
                         orderLines={"orderLine": [{"itemCode": x.get("itemCode"), "planQty": x.get("planQty"),
                                                    "actualQty": 0} for x in stored["orderLines"]]})

    # -- inventory.query (reference §5.6) --
    def _inventory(self, root: ET.Element, body: bytes) -> Response:
        criteria = root.findall("criteriaList/criteria")
        if not criteria:
            raise _Reject("missing-parameter", "criteriaList is required")
        items = []
        with self.lock:
            snapshot = dict(self.stock)
        for i, c in enumerate(criteria):
            sku = (c.findtext("itemCode") or "").strip()
            if not sku:
                raise _Reject("missing-parameter", f"criteriaList.criteria[{i}].itemCode is required")
            wh = (c.findtext("warehouseCode") or "").strip()
            inv = (c.findtext("inventoryType") or "").strip()
            if inv and inv not in INVENTORY_TYPES:
                raise _Reject("invalid-parameter", f"criteriaList.criteria[{i}].inventoryType {inv!r} is unknown")
            for (w, s, t), (qty, lock) in snapshot.items():
                if s == sku and (not wh or w == wh) and (not inv or t == inv):
                    items.append({"warehouseCode": w, "itemCode": s, "inventoryType": t, "quantity": qty,
                                  "lockQuantity": lock})
        return _response("success", "0", "success", items={"item": items})


def _parse_stock(text: str) -> dict[tuple[str, str], Any]:
    """``WH-SH:SKU-001=100,WH-GZ:SKU-001=5`` (for ``orderhub-sandbox qimen --set stock=…``)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, qty = part.partition("=")
        wh, _, sku = key.partition(":")
        out[(wh, sku)] = qty
    return out


def make_app(**settings: Any) -> QimenWms:
    """Settings: app_key, app_secret, customer_id, check_timestamp, timestamp_tolerance, required
    (spec|official), duplicate_style (success|failure), stock (dict or ``WH:SKU=qty,…``), outage, and the
    :class:`Faults` rates (error_rate, timeout_rate, slow_rate, malformed_rate, seed, …)."""
    fault_keys = set(Faults.__dataclass_fields__) - {"_rng", "injected"}
    faults = Faults(**{k: settings.pop(k) for k in list(settings) if k in fault_keys})
    outage = bool(settings.pop("outage", False))
    if isinstance(settings.get("stock"), str):
        settings["stock"] = _parse_stock(settings["stock"])
    for key in ("app_key", "app_secret", "customer_id"):
        if key in settings and settings[key] is not None:
            settings[key] = str(settings[key])
    app = QimenWms(faults=faults, **settings)
    app.outage = outage
    return app
