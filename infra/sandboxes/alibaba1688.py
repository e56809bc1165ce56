"""1688 AOP sandbox: a local gateway that signs, pages, limits and fails like gw.open.1688.com (reference §3.7).

* ``POST /openapi/param2/1/{namespace}/{api}/{appKey}`` (form). The gateway recomputes ``_aop_signature`` from
  the path-derived urlPath and every form field (§3.2), checks ``_aop_timestamp`` when sent, maps the
  ``access_token`` to its seller and refuses expired ones with HTTP 401 "Request need user authenticated".
* ``alibaba.trade.getSellerOrderList``: ``modifyStartTime``/``modifyEndTime`` (or create times) in
  ``yyyyMMddHHmmssSSS+0800``, ``page`` from 1, ``pageSize`` ≤ 20, newest created first, ``totalRecord``;
  receiver fields only with ``needBuyerAddressAndPhone=true`` and always masked (``fromEncryptOrder``), with
  ``caid``/``ccid`` decrypt ids. Orders with more than ``list_max_lines`` lines are listed without
  ``productItems`` — ``alibaba.trade.get.sellerView`` returns them.
* App-level QPS limit: a burst over ``qps_limit`` starts a ban of ``ban_seconds`` answered with HTTP 400
  ``gw.QosAppFrequencyLimit``; a call during the ban extends it (``ban_extends``).
* Seeded, deterministic shops (``seed``); :meth:`Alibaba1688Sandbox.advance` moves orders along their status
  lifecycle and :meth:`add_orders` creates new ones (both stamp ``modifyTime`` = now); ``churn_per_list_call``
  or :attr:`on_list_call` does that *while* a client pages.

Sandbox assumptions (not documented by 1688, marked so nobody mistakes them for platform facts): the ban
length is announced in ``error_message`` ("This ban will last for N more seconds", TOP's wording); a stale
``_aop_timestamp`` is refused with ``gw.TimestampInvalid``; a modified-time window longer than
``max_window_days`` or a ``pageSize`` over 20 is a business error ``InvalidParameter``.
"""
from __future__ import annotations

import random
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from orderhub.connectors.alibaba1688.client import aop_signature, format_aop_time, parse_aop_time
from orderhub.connectors.common.privacy import mask_address, mask_name, mask_phone
from orderhub.infra.sandboxes.base import Faults, Request, Response, SandboxApp
from orderhub.infra.sandboxes.common import QpsBan, TokenShops, faults_from

_ROUTE = re.compile(r"^/openapi/(param2/(\d+)/([^/]+)/([^/]+)/([^/]+))$")
CENT = Decimal("0.01")
CST = timezone(timedelta(hours=8))
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

PRODUCTS = [  # (cargoNumber, name, unit price yuan, unit)
    ("BZ-C200-BP", "奔驰C200 前刹车片", "268.00", "套"),
    ("M6-SS-100", "304不锈钢螺丝 M6×20（100只）", "18.50", "包"),
    ("LED-T8-12", "LED灯管 T8 1.2米", "22.00", "支"),
    ("PK-BOX-30", "五层瓦楞纸箱 30×20×15", "3.20", "个"),
    ("GL-NTR-L", "丁腈手套 L码（100只）", "35.00", "盒"),
    ("CB-25-100", "国标铜芯电线 2.5平方 100米", "189.00", "卷"),
    ("TP-48-100", "透明封箱胶带 48mm×100m", "6.80", "卷"),
    ("AB-6204", "深沟球轴承 6204-2RS", "9.90", "个"),
]
PLACES = [  # province, city, area, division code, street
    ("浙江省", "杭州市", "滨江区", "330108", "网商路699号"),
    ("上海", "上海市", "浦东新区", "310115", "张江路88号"),
    ("广东省", "深圳市", "南山区", "440305", "科技园南区12栋"),
    ("江苏省", "苏州市", "工业园区", "320571", "星湖街328号"),
    ("北京", "北京市", "朝阳区", "110105", "建国路93号"),
]
PEOPLE = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]
COMPANIES = ["杭州恒远贸易有限公司", "苏州精工五金厂", "深圳速达电子商行", "上海联华汽配有限公司", "北京禾丰包装材料部"]
NEXT_STATUS = {
    "waitbuyerpay": "waitsellersend", "waitsellersend": "waitbuyerreceive",
    "waitbuyerreceive": "confirm_goods", "confirm_goods": "success",
}
LOGISTICS_STATUS = {"waitbuyerpay": 8, "waitsellersend": 1, "waitbuyerreceive": 2, "confirm_goods": 3,
                    "success": 3, "cancel": 8}


def _fmt(ms: int) -> str:
    return format_aop_time(datetime.fromtimestamp(ms // 1000, CST).replace(microsecond=ms % 1000 * 1000))


def _ms(text: str) -> int:
    return (parse_aop_time(text) - EPOCH) // timedelta(milliseconds=1)


def _money(v: Decimal) -> float:
    """BigDecimal yuan on the wire (a JSON number)."""
    return float(v.quantize(CENT))


class Alibaba1688Sandbox(TokenShops, SandboxApp):
    name = "alibaba1688"

    def __init__(self, *, app_key: str = "1000000", app_secret: str = "test123", seed: int = 1688,
                 shops: tuple[str, ...] | list[str] | str = ("b2b-seller-1", "b2b-seller-2"),
                 orders_per_shop: int = 60, history_hours: float = 72.0, base_time: float | None = None,
                 history_gap_seconds: float = 120.0,
                 max_page_size: int = 20, max_window_days: float = 7.0, qps_limit: float = 50.0,
                 ban_seconds: float = 5.0, ban_extends: bool = True, timestamp_tolerance: float = 600.0,
                 token_ttl: float = 36000.0, list_max_lines: int = 3, churn_per_list_call: int = 0,
                 auto_advance_seconds: float = 0.0, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.app_key, self.app_secret = str(app_key), str(app_secret)
        self.shops = [s.strip() for s in shops.split(",")] if isinstance(shops, str) else list(shops)
        self.max_page_size, self.max_window_days = int(max_page_size), float(max_window_days)
        self.timestamp_tolerance, self.token_ttl = float(timestamp_tolerance), float(token_ttl)
        self.list_max_lines, self.churn_per_list_call = int(list_max_lines), int(churn_per_list_call)
        self.auto_advance_seconds = float(auto_advance_seconds)
        self.limiter = QpsBan(qps_limit, ban_seconds, extend=bool(ban_extends))
        self.clock: Callable[[], float] = time.time
        self.base_time = float(base_time if base_time is not None else int(self.clock()))
        base_ms = int(self.base_time * 1000)
        self.rng = random.Random(seed)
        self.history_gap = float(history_gap_seconds)
        self.orders: dict[str, dict] = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self.calls: list[dict] = []
        self.list_calls = 0
        self.on_list_call: Callable[["Alibaba1688Sandbox", str, int], None] | None = None
        self._seq = 0
        self._last_auto = self.clock()
        for i, shop in enumerate(self.shops):
            self.tokens[f"{shop}-token-{seed}"] = (shop, self.base_time + self.token_ttl)
            for _ in range(int(orders_per_shop)):
                created = base_ms - int(self.rng.uniform(self.history_gap, history_hours * 3600.0) * 1000)
                self._new_order(shop, created, seeded=True)

    # --- ground truth for tests ------------------------------------------------------------------------------------
    def versions(self, shop: str | None = None) -> dict[str, str]:
        """``{order id: modifyTime}`` as the API shows it."""
        return {oid: _fmt(o["modified"]) for oid, o in self.orders.items()
                if shop is None or o["shop"] == shop}

    def trade_info(self, order_id: str) -> dict:
        """The order as ``alibaba.trade.get.sellerView`` returns it."""
        return self._render(self.orders[order_id], lines=True, contact=True)

    def advance(self, n: int = 1, shop: str | None = None, *, ids: list[str] | None = None) -> list[str]:
        """Move ``n`` open orders (or the open ones among ``ids``) one step along their lifecycle; some unpaid
        ones get cancelled. ``modifyTime`` = now."""
        with self.lock:
            open_ids = sorted(oid for oid, o in self.orders.items()
                              if o["status"] in NEXT_STATUS and (shop is None or o["shop"] == shop))
            picked = [i for i in ids if i in open_ids] if ids else self.rng.sample(open_ids, min(n, len(open_ids)))
            now = self._now_ms()
            for oid in picked:
                o = self.orders[oid]
                cancel = o["status"] == "waitbuyerpay" and self.rng.random() < 0.2
                nxt = "cancel" if cancel else NEXT_STATUS[o["status"]]
                self._set_status(o, nxt, now)
            return picked

    def add_orders(self, shop: str, n: int = 1) -> list[str]:
        """New orders created now."""
        with self.lock:
            return [self._new_order(shop, self._now_ms(), seeded=False) for _ in range(n)]

    # --- data ------------------------------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _new_order(self, shop: str, created: int, *, seeded: bool) -> str:
        """A new order created at ``created`` (epoch ms); seeded ones replay a history ending before base_time."""
        r = self.rng
        self._seq += 1
        oid = str(120_000_000_000_000_000 + self.shops.index(shop) * 10**13 + self._seq * 7919)
        place = r.choice(PLACES)
        n_lines = r.choice([1, 1, 1, 2, 2, 3, 4, 5]) if seeded else r.choice([1, 2, 4])
        lines = []
        for j, (cargo, name, price, unit) in enumerate(r.sample(PRODUCTS, n_lines)):
            lines.append({"sub": str(int(oid) * 10 + j + 1), "cargo": cargo, "name": name, "unit": unit,
                          "price": Decimal(price), "qty": r.choice([1, 2, 5, 10, 20, 50]),
                          "product": 600_000_000_000 + PRODUCTS.index((cargo, name, price, unit)),
                          "refund": ""})
        person = r.choice(PEOPLE)
        o = {
            "id": oid, "shop": shop, "status": "waitbuyerpay", "created": created,
            "modified": created, "paid": None, "shipped": None, "done": None,
            "buyer": r.choice(COMPANIES), "buyer_login": f"buyer{r.randint(100, 999)}",
            "receiver": {"name": person, "mobile": f"13{r.randint(100000000, 999999999)}",
                         "province": place[0], "city": place[1], "area": place[2], "code": place[3],
                         "address": f"{place[0]}{place[1]}{place[2]}{place[4]}", "zip": place[3][:3] + "000"},
            "memo": r.choice(["", "", "", "加急，今天发", "开增值税专票", "老客户"]),
            "feedback": r.choice(["", "", "请用顺丰", "周末不收货"]),
            "shipping": Decimal(r.choice(["0.00", "8.00", "12.00"])), "discount_fen": r.choice([0, 0, 500, 1000]),
            "lines": lines, "logistics": [],
        }
        self.orders[oid] = o
        if seeded:
            target = r.choices(["waitbuyerpay", "waitsellersend", "waitbuyerreceive", "confirm_goods", "success",
                                "cancel"], weights=[10, 30, 25, 10, 20, 5])[0]
            path = ["waitsellersend", "waitbuyerreceive", "confirm_goods", "success"]
            steps = [] if target == "waitbuyerpay" else ["cancel"] if target == "cancel" else \
                path[: path.index(target) + 1]
            t, last = o["created"], int((self.base_time - self.history_gap) * 1000)
            for st in steps:
                t = max(o["modified"], min(last, t + int(r.uniform(60.0, 6 * 3600.0) * 1000)))
                self._set_status(o, st, t)
            if steps and target in ("waitbuyerreceive", "confirm_goods") and r.random() < 0.15:
                o["lines"][0]["refund"] = "WAIT_SELLER_AGREE"
        return oid

    def _set_status(self, o: dict, status: str, ts: int) -> None:
        o["status"], o["modified"] = status, ts
        if status == "waitsellersend":
            o["paid"] = ts
        elif status == "waitbuyerreceive":
            o["shipped"] = ts
            o["logistics"] = [{"logisticsCompanyName": "顺丰速运", "logisticsBillNo": f"SF{o['id'][-10:]}",
                               "deliveredTime": _fmt(ts),
                               "subItemIds": ",".join(line["sub"] for line in o["lines"])}]
        elif status in ("success", "cancel"):
            o["done"] = ts

    def _render(self, o: dict, *, lines: bool, contact: bool) -> dict:
        """One ``TradeInfo`` (§3.3)."""
        t = lambda ts: _fmt(ts) if ts else None  # noqa: E731
        items = []
        goods = Decimal("0")
        for line in o["lines"]:
            amount = (line["price"] * line["qty"]).quantize(CENT)
            goods += amount
            items.append({
                "subItemID": int(line["sub"]), "subItemIDString": line["sub"], "productID": line["product"],
                "skuID": line["product"] * 10 + 1, "specId": f"spec-{line['cargo'].lower()}",
                "name": line["name"], "cargoNumber": line["cargo"], "price": _money(line["price"]),
                "quantity": line["qty"], "unit": line["unit"], "itemAmount": _money(amount), "entryDiscount": 0,
                "status": o["status"], "statusStr": o["status"], "refundStatus": line["refund"] or None,
                "logisticsStatus": LOGISTICS_STATUS[o["status"]],
                "gmtCreate": t(o["created"]), "gmtModified": t(o["modified"]),
            })
        base = {
            "id": int(o["id"]), "idOfStr": o["id"], "status": o["status"],
            "createTime": t(o["created"]), "modifyTime": t(o["modified"]), "payTime": t(o["paid"]),
            "allDeliveredTime": t(o["shipped"]), "completeTime": t(o["done"]) if o["status"] == "success" else None,
            "totalAmount": _money(goods + o["shipping"]), "sumProductPayment": _money(goods),
            "shippingFee": _money(o["shipping"]), "discount": o["discount_fen"], "refund": 0,
            "currency": "CNY", "tradeType": "1", "businessType": "cn",
            "buyerID": f"b2b-{o['buyer_login']}", "buyerLoginId": o["buyer_login"],
            "buyerOpenUid": f"BBB{uuid.uuid5(uuid.NAMESPACE_OID, o['buyer_login']).hex[:20]}",
            "sellerID": o["shop"], "sellerLoginId": o["shop"], "buyerFeedback": o["feedback"],
            "remark": "", "sellerMemo": o["memo"], "closeReason": "buyerCancel" if o["status"] == "cancel" else None,
            "buyerContact": {"companyName": o["buyer"], "name": mask_name(o["receiver"]["name"])},
            "ccid": f"ccid-{uuid.uuid5(uuid.NAMESPACE_OID, o['id'] + 'c').hex[:16]}",
            "refundStatus": "waitselleragree" if any(line["refund"] for line in o["lines"]) else None,
        }
        out: dict[str, Any] = {"baseInfo": base, "fromEncryptOrder": True, "tradeTerms": []}
        if contact:
            rc = o["receiver"]
            base["receiverInfo"] = {
                "toFullName": mask_name(rc["name"]), "toMobile": mask_phone(rc["mobile"]), "toPhone": "",
                "toPost": rc["zip"], "toDivisionCode": rc["code"],
                "toArea": f"{rc['province']} {rc['city']} {rc['area']} {mask_address(rc['address'])}",
            }
            out["nativeLogistics"] = {
                "address": mask_address(rc["address"]), "area": rc["area"], "areaCode": rc["code"],
                "city": rc["city"], "province": rc["province"], "contactPerson": mask_name(rc["name"]),
                "mobile": mask_phone(rc["mobile"]), "telephone": "", "zip": rc["zip"], "town": "",
                "caid": f"caid-{uuid.uuid5(uuid.NAMESPACE_OID, o['id'] + 'a').hex[:16]}",
                "logisticsItems": o["logistics"],
            }
        if lines:
            out["productItems"] = items
        base = {k: v for k, v in base.items() if v is not None}
        out["baseInfo"] = base
        return out

    # --- gateway ---------------------------------------------------------------------------------------------------
    def _gw_error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"error_code": code, "error_message": message, "exception": message,
                                 "request_id": uuid.uuid4().hex[:16]})

    def _biz_error(self, code: str, message: str) -> Response:
        return Response(200, {"success": False, "errorCode": code, "errorMessage": message})

    def handle(self, req: Request) -> Response:
        m = _ROUTE.match(req.path)
        if req.method != "POST" and req.method != "GET":
            return self._gw_error(405, "gw.HttpMethodNotAllowed", "use POST")
        if not m:
            return self._gw_error(400, "gw.AppKeyMissing" if req.path.count("/") < 6 else "gw.APINotFound",
                                  "expected /openapi/param2/1/{namespace}/{api}/{appKey}")
        url_path, _, ns, api, app_key = m.groups()
        form = req.form()
        shop = None
        entry = {"t": self.clock(), "api": api, "page": form.get("page"), "shop": None, "outcome": "ok"}
        self.calls.append(entry)
        if app_key != self.app_key:
            entry["outcome"] = "appkey"
            return self._gw_error(400, "gw.AppKeyNotFound", f"AppKey {app_key} not found")
        banned = self.limiter.check()
        if banned is not None:
            entry["outcome"] = "banned"
            return self._gw_error(400, "gw.QosAppFrequencyLimit",
                                  f"App call exceeds limited frequency; This ban will last for "
                                  f"{max(1, int(banned + 0.999))} more seconds")
        sig = form.get("_aop_signature")
        if not sig:
            entry["outcome"] = "signature"
            return self._gw_error(400, "gw.SignatureMissing", "_aop_signature is missing")
        if sig != aop_signature(url_path, form, self.app_secret):
            entry["outcome"] = "signature"
            return self._gw_error(400, "gw.SignatureInvalid", "Signature invalid")
        ts = form.get("_aop_timestamp")
        if ts is not None:
            try:
                skew = abs(int(ts) / 1000.0 - self.clock())
            except ValueError:
                skew = float("inf")
            if skew > self.timestamp_tolerance:
                entry["outcome"] = "timestamp"
                return self._gw_error(400, "gw.TimestampInvalid", f"_aop_timestamp {ts} is out of range")
        token = form.get("access_token")
        owner = self.tokens.get(token or "")
        if owner is None or owner[1] < self.clock():
            entry["outcome"] = "auth"
            return self._gw_error(401, "401", "Request need user authenticated")
        shop = owner[0]
        entry["shop"] = shop
        self._auto_advance()
        if ns == "com.alibaba.trade" and api == "alibaba.trade.getSellerOrderList":
            return self._order_list(shop, form, entry)
        if ns == "com.alibaba.trade" and api == "alibaba.trade.get.sellerView":
            return self._order_detail(shop, form)
        entry["outcome"] = "acl"
        return self._gw_error(400, "gw.APIACLDecline", "AppKey is not allowed(acl)")

    def _order_list(self, shop: str, form: dict[str, str], entry: dict) -> Response:
        try:
            page = int(form.get("page") or 1)
            size = int(form.get("pageSize") or 20)
        except ValueError:
            return self._biz_error("InvalidParameter", "page and pageSize must be integers")
        if size > self.max_page_size or size < 1 or page < 1:
            return self._biz_error("InvalidParameter", f"pageSize must be 1..{self.max_page_size}, page from 1")
        bounds: dict[str, float] = {}
        for key in ("modifyStartTime", "modifyEndTime", "createStartTime", "createEndTime"):
            if form.get(key):
                try:
                    bounds[key] = _ms(form[key])
                except ValueError:
                    return self._biz_error("InvalidParameter", f"{key} must be yyyyMMddHHmmssSSS+0800")
        for a, b in (("modifyStartTime", "modifyEndTime"), ("createStartTime", "createEndTime")):
            if a in bounds and b in bounds and bounds[b] - bounds[a] > self.max_window_days * 86400_000:
                return self._biz_error("InvalidParameter", f"{a}..{b} must not span more than "
                                                           f"{self.max_window_days:g} days")
        with self.lock:
            self.list_calls += 1
            n = self.list_calls
            if n > 1 and self.churn_per_list_call:
                self.advance(self.churn_per_list_call, shop)
                self.add_orders(shop, self.churn_per_list_call)
            if self.on_list_call is not None:
                self.on_list_call(self, shop, n)
            rows = [o for o in self.orders.values() if o["shop"] == shop
                    and bounds.get("modifyStartTime", -1e18) <= o["modified"] <= bounds.get("modifyEndTime", 1e18)
                    and bounds.get("createStartTime", -1e18) <= o["created"] <= bounds.get("createEndTime", 1e18)]
            rows.sort(key=lambda o: (o["created"], o["id"]), reverse=True)
            want_contact = form.get("needBuyerAddressAndPhone", "false").lower() == "true"
            want_memo = form.get("needMemoInfo", "false").lower() == "true"
            chunk = rows[(page - 1) * size: page * size]
            result = []
            for o in chunk:
                info = self._render(o, lines=len(o["lines"]) <= self.list_max_lines, contact=want_contact)
                if not want_memo:
                    info["baseInfo"].pop("sellerMemo", None)
                result.append(info)
        entry["returned"] = len(result)
        return Response(200, {"result": result, "totalRecord": len(rows), "success": True})

    def _order_detail(self, shop: str, form: dict[str, str]) -> Response:
        oid = form.get("orderId") or ""
        with self.lock:
            o = self.orders.get(oid)
            if o is None or o["shop"] != shop:
                return self._biz_error("ORDER_NOT_EXIST", f"order {oid} not found for this seller")
            return Response(200, {"result": self._render(o, lines=True, contact=True), "success": "true"})


def make_app(**settings: Any) -> Alibaba1688Sandbox:
    """Build the sandbox. ``seed`` seeds the data, ``fault_seed`` the faults; fault settings (``error_rate``,
    ``timeout_rate``, ``malformed_rate``, …) go to :class:`Faults`, the rest to :class:`Alibaba1688Sandbox`."""
    return Alibaba1688Sandbox(faults=faults_from(settings), **settings)
