"""JD JOS sandbox: ``POST /routerjson`` for POP orders as the gateway answers it (reference §2, notes §2.7).

Checks, each with JOS's own ``error_response`` (string ``code``, ``zh_desc``, ``en_desc``): app key (21), the
app's call limit with bans (2 "App Call Limited"; JOS does not say for how long), signature MD5 over every
received param (11/12), timestamp within ±6 minutes in either ``yyyy-MM-dd HH:mm:ss`` or ``…SSS+0800`` (7/8),
version (4/5), method (14/15), access token (18/19, tokens can expire). Business rules answer inside
``…_responce.searchorderinfo_result.apiResult`` (``success=false``): ``page_size`` ≤ 100, window ≤ 1 month unless
only ``WAIT_SELLER_STOCK_OUT`` with no dates, ``order_state``/``optional_fields`` required.

APIs: ``jingdong.pop.order.search`` (desensitized consignee) and ``jingdong.pop.order.enSearch`` (adds the
``encrypt_*`` ciphertexts, §2.6); ``dateType`` 1 = creation time, else modification time; ``sortType`` 1 = newest
first. Seeded shops (``seed``, ``shops``, ``orders_per_shop``, ``history_hours``) whose orders move on through
JD states (:meth:`JDSandbox.change_statuses`), new orders on every N calls (``new_order_every_calls``), fault
knobs (base ``Faults`` + ``busy_rate`` → code 65). Ground truth: :meth:`orders_modified_between`, :meth:`all_ids`,
:attr:`limiter`.

Run by hand: ``orderhub-sandbox jd --port 8802 --set shops=2 --set orders_per_shop=100``.
"""
from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import itertools
import json
import math
import random
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from orderhub.connectors.common.privacy import mask_address, mask_name, mask_phone
from orderhub.infra.sandboxes.base import Faults, Request, Response, SandboxApp
from orderhub.infra.sandboxes.common import (
    SHANGHAI, BanLimiter, BookGroundTruth, CallLog, OrderBook, faults_from, fmt, parse, pick, shop_names,
    stats_of,
)
from orderhub.infra.sandboxes.taobao import NAMES, PLACES

TIMESTAMP_SKEW = 360                       # JOS: ±6 minutes
STATES = ("WAIT_SELLER_STOCK_OUT", "WAIT_SELLER_DELIVERY", "WAIT_GOODS_RECEIVE_CONFIRM", "FINISHED_L",
          "TRADE_CANCELED", "LOCKED", "PAUSE", "POP_ORDER_PAUSE", "WAIT_SEND_CODE")
TERMINAL = {"FINISHED_L", "TRADE_CANCELED"}
NEXT: dict[str, list[tuple[str, float]]] = {
    "WAIT_SELLER_STOCK_OUT": [("WAIT_GOODS_RECEIVE_CONFIRM", 0.8), ("TRADE_CANCELED", 0.12), ("LOCKED", 0.08)],
    "LOCKED": [("WAIT_SELLER_STOCK_OUT", 0.7), ("TRADE_CANCELED", 0.3)],
    "PAUSE": [("WAIT_SELLER_STOCK_OUT", 1.0)],
    "WAIT_GOODS_RECEIVE_CONFIRM": [("FINISHED_L", 1.0)],
}
SEED_STATES = [("WAIT_SELLER_STOCK_OUT", 40), ("WAIT_GOODS_RECEIVE_CONFIRM", 25), ("FINISHED_L", 25),
               ("TRADE_CANCELED", 5), ("LOCKED", 3), ("PAUSE", 2)]
PRODUCTS = [("海尔 EG100 滚筒洗衣机", "HR-EG100", "2199.00"), ("美的 KFR-35GW 空调", "MD-35GW", "2899.00"),
            ("小米 手环 8", "MI-BAND8", "239.00"), ("格力 大松 电风扇", "GREE-FAN-01", "199.00"),
            ("九阳 豆浆机 D2", "JY-D2", "399.00"), ("苏泊尔 电饭煲 4L", "SPR-RC4L", "329.00")]
REMARKS = ["", "", "", "加急", "请开增值税专用发票", "周末送货"]
ERRORS = {
    "2": ("限制时间内调用失败次数", "App Call Limited"), "4": ("缺少版本参数", "Missing Version"),
    "5": ("不支持的版本号", "Unsupported Version"), "7": ("缺少时间戳参数", "Missing Timestamp"),
    "8": ("非法的时间戳参数", "Invalid Timestamp"), "11": ("缺少签名参数", "Missing Signature"),
    "12": ("无效签名", "Invalid Signature"), "14": ("缺少方法名参数", "Missing Method"),
    "15": ("不存在的方法名", "Invalid Method"), "18": ("缺少access_token参数", "Missing access_token"),
    "19": ("无效access_token", "Invalid access_token"), "21": ("无效的App Key", "Invalid App Key"),
    "65": ("系统处理超时！请重新进行检索", "Service Timeout"),
}


def expected_sign(params: dict[str, str], secret: str) -> str:
    """The gateway's side of JOS signing (§2.2): MD5 over every received param except ``sign``."""
    s = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
    return hashlib.md5((secret + s + secret).encode("utf-8")).hexdigest().upper()


def verify_sign(params: dict[str, str], secret: str) -> bool:
    return bool(params.get("sign")) and hmac.compare_digest(expected_sign(params, secret), params["sign"])


def parse_timestamp(ts: str) -> float:
    """``yyyy-MM-dd HH:mm:ss`` (doc) or ``yyyy-MM-dd HH:mm:ss.SSS+0800`` (current SDKs), both GMT+8."""
    if len(ts) > 19:
        return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
    return parse(ts)


def add_month(ts: float) -> float:
    dt = datetime.fromtimestamp(ts, SHANGHAI)
    y, m = dt.year + dt.month // 12, dt.month % 12 + 1
    return dt.replace(year=y, month=m, day=min(dt.day, calendar.monthrange(y, m)[1])).timestamp()


class JosError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class BusinessError(Exception):
    """Refused inside the ``apiResult`` of a normal answer."""


class JDSandbox(BookGroundTruth, SandboxApp):
    """The JOS routerjson gateway for one app and seeded POP shops. See the module doc for the settings."""

    name = "jd"
    PATH = "/routerjson"
    APIS = ("jingdong.pop.order.search", "jingdong.pop.order.enSearch")

    def __init__(self, *, app_key: str = "test-app", app_secret: str = "test-secret", seed: int = 11,
                 shops: Any = 2, orders_per_shop: int = 40, history_hours: float = 48.0,
                 base_time: float | None = None, qps_limit: float = 0.0, ban_seconds: float = 60.0,
                 token_ttl_seconds: float = 0.0, expired_shops: Any = (), new_order_every_calls: int = 0,
                 status_change_every_calls: int = 0, busy_rate: float = 0.0,
                 clock: Callable[[], float] = time.time, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.clock = clock
        self.apps = {str(app_key): str(app_secret)}
        self.seed = seed
        self.shops = shop_names(shops, "jdshop")
        self.tokens = {s: token_key(seed, s) for s in self.shops}
        self._shop_by_token = {v: k for k, v in self.tokens.items()}
        self.vender_ids = {s: str(10000 + 37 * (i + 1)) for i, s in enumerate(self.shops)}
        self.started = clock()
        self.token_ttl = float(token_ttl_seconds)
        self.expired: set[str] = set(shop_names(expired_shops, "jdshop")) if expired_shops else set()
        self.limiter = BanLimiter(float(qps_limit), float(ban_seconds), clock=clock)
        self.new_order_every_calls = int(new_order_every_calls)
        self.status_change_every_calls = int(status_change_every_calls)
        self.busy_rate = float(busy_rate)
        self.book = OrderBook()
        self.log = CallLog()
        self.created_during_run: list[str] = []
        self._business_calls = 0
        self._events_rng = random.Random(f"jd:{seed}:events")
        self._seq = itertools.count(0)
        base = math.floor(base_time if base_time is not None else clock())
        for shop in self.shops:
            rng = random.Random(f"jd:{seed}:{shop}")
            for _ in range(int(orders_per_shop)):
                created = base - rng.randint(120, max(121, int(history_hours * 3600)))
                modified = min(base - 60, created + rng.randint(0, 6 * 3600))
                self._new_order(shop, rng, created, modified, pick(rng, SEED_STATES), bulk=True)
        self.book.reindex()

    # --- data ---------------------------------------------------------------------------------------------------
    def _new_order(self, shop: str, rng: random.Random, created: int, modified: int, state: str, *,
                   bulk: bool = False) -> str:
        order_id = str(230398700000 + self.shops.index(shop) * 1_000_000_000 + next(self._seq) * 3 + rng.randint(0, 2))
        name = rng.choice(NAMES)
        province, city, district, street = rng.choice(PLACES)
        mobile = f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"
        items, total = [], Decimal("0")
        for _ in range(rng.choice([1, 1, 2, 3])):
            title, code, price = rng.choice(PRODUCTS)
            qty = rng.choice([1, 1, 2])
            total += Decimal(price) * qty
            items.append({"skuId": str(100000000 + int(hashlib.md5(code.encode()).hexdigest()[:6], 16)),
                          "outerSkuId": code, "skuName": title, "jdPrice": price, "itemTotal": str(qty),
                          "wareId": str(2000000 + int(hashlib.md5(code.encode()).hexdigest()[:5], 16)),
                          "productNo": code, "giftPoint": "0", "newStoreId": "0"})
        discount = Decimal(rng.choice(["0.00", "0.00", "20.00", "50.00"])).min(total)
        freight = Decimal(rng.choice(["0.00", "0.00", "10.00"]))
        full_address = f"{province}{city}{district}{street}"
        cipher = lambda v: base64.b64encode(  # noqa: E731 - JD TDE shape: header ‖ key id ‖ IV ‖ data
            b"\x02\x04" + hashlib.md5(f"key{self.seed}".encode()).digest()
            + hashlib.sha256(f"{v}{order_id}".encode()).digest()).decode()
        order = {
            "orderId": order_id, "venderId": self.vender_ids[shop], "orderType": "22", "payType": "4",
            "orderTotalPrice": f"{total:.2f}", "orderSellerPrice": f"{total - discount:.2f}",
            "orderPayment": f"{total - discount + freight:.2f}", "freightPrice": f"{freight:.2f}",
            "sellerDiscount": f"{discount:.2f}", "balanceUsed": "0.00", "taxFee": "0.00",
            "orderState": state, "orderStateRemark": state, "deliveryType": "任意时间",
            "invoiceInfo": rng.choice(["不需要开具发票", "发票类型:电子发票;发票抬头:个人"]),
            "orderRemark": rng.choice(["", "", "请尽快发货", "送货前电话联系"]), "venderRemark": rng.choice(REMARKS),
            "orderStartTime": fmt(created), "paymentConfirmTime": fmt(created + rng.randint(5, 300)),
            "orderEndTime": fmt(modified) if state in TERMINAL else "0001-01-01 00:00:00",
            "modified": fmt(modified), "orderSource": "移动端订单", "storeOrder": "", "idSopShipmenttype": "",
            "pin": mask_name("jd_" + hashlib.md5(mobile.encode()).hexdigest()[:8]),
            "open_id_buyer": "o" + hashlib.sha1(f"{seed_key(self.seed)}{mobile}".encode()).hexdigest()[:27],
            "consigneeInfo": {
                "fullname": mask_name(name), "mobile": mask_phone(mobile), "telephone": mask_phone(mobile),
                "fullAddress": mask_address(full_address), "province": province, "city": city, "county": district,
                "town": "", "provinceId": "1", "cityId": "72", "countyId": "2799", "townId": "0",
                "_encrypt": {"encrypt_fullname": cipher(name), "encrypt_mobile": cipher(mobile),
                             "encrypt_telephone": cipher(mobile), "encrypt_fullAddress": cipher(full_address)},
            },
            "itemInfoList": items,
            "couponDetailList": ([{"orderId": order_id, "skuId": items[0]["skuId"], "couponType": "100-店铺优惠",
                                   "couponPrice": f"{discount:.2f}"}] if discount else []),
            "waybill": "", "logisticsId": "", "returnOrder": "0", "parentOrderId": "0", "storeId": "0",
        }
        if "电子发票" in order["invoiceInfo"]:
            order["invoiceCode"] = "91330100MA2XXXXXXX"
        self.book.put(shop, order_id, order, created, modified, bulk=bulk)
        return order_id

    def create_orders(self, n: int = 1, shop: str | None = None) -> list[str]:
        """New paid orders arriving now (WAIT_SELLER_STOCK_OUT); returns their ``orderId``."""
        out = []
        with self.lock:
            now = math.floor(self.clock())
            for k in range(n):
                s = shop or self.shops[(len(self.created_during_run) + k) % len(self.shops)]
                rng = random.Random(f"jd:{self.seed}:new:{len(self.created_during_run)}:{k}")
                out.append(self._new_order(s, rng, now, now, "WAIT_SELLER_STOCK_OUT"))
            self.created_during_run.extend(out)
        return out

    def change_statuses(self, n: int = 1, shop: str | None = None) -> list[str]:
        """Move ``n`` open orders one state on (stock out → receive confirm → finished, or cancel/lock)."""
        changed: list[str] = []
        with self.lock:
            now = math.floor(self.clock())
            open_ids = sorted(oid for oid, o in self.book.orders.items()
                              if o["orderState"] not in TERMINAL and (shop is None or self.book.shop_of[oid] == shop))
            for oid in self._events_rng.sample(open_ids, min(n, len(open_ids))):
                o = self.book.orders[oid]
                o["orderState"] = o["orderStateRemark"] = pick(
                    self._events_rng, NEXT.get(o["orderState"], [("FINISHED_L", 1.0)]))
                if o["orderState"] in TERMINAL:
                    o["orderEndTime"] = fmt(now)
                if o["orderState"] == "WAIT_GOODS_RECEIVE_CONFIRM":
                    o["waybill"], o["logisticsId"] = f"JDV{now}{oid[-4:]}", "467"
                o["modified"] = fmt(now)
                self.book.touch(oid, now)
                changed.append(oid)
        return changed

    # --- ground truth -------------------------------------------------------------------------------------------
    def expire_token(self, shop: str) -> None:
        self.expired.add(shop)

    # --- gateway ------------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method == "GET" and req.path == "/_sandbox/stats":
            return Response(200, stats_of(self))
        if req.path.rstrip("/") != self.PATH:
            return Response(404, {"error": f"not found: {req.path}; the JOS gateway is {self.PATH}"})
        p = req.form()
        arrived = self.clock()
        shop = None
        try:
            shop = self._check(p)
            body = self._dispatch(p, shop)
            self.log.add(arrived, p.get("app_key", ""), p.get("method", ""), shop, "0")
            return Response(200, {p["method"].replace(".", "_") + "_responce": body})
        except JosError as e:
            self.log.add(arrived, p.get("app_key", ""), p.get("method", ""), shop, e.code)
            zh, en = ERRORS[e.code]
            return Response(200, {"error_response": {"code": e.code, "zh_desc": zh, "en_desc": en}})

    def _check(self, p: dict[str, str]) -> str:
        secret = self.apps.get(p.get("app_key") or "")
        if secret is None:
            raise JosError("21")
        if self.limiter.admit(p["app_key"]) is not None:
            raise JosError("2")
        if not p.get("sign"):
            raise JosError("11")
        if not verify_sign(p, secret):
            raise JosError("12")
        ts = p.get("timestamp")
        if not ts:
            raise JosError("7")
        try:
            when = parse_timestamp(ts)
        except ValueError:
            raise JosError("8") from None
        if abs(when - self.clock()) > TIMESTAMP_SKEW:
            raise JosError("8")
        if not p.get("v"):
            raise JosError("4")
        if p["v"] != "2.0":
            raise JosError("5")
        if not p.get("method"):
            raise JosError("14")
        if p["method"] not in self.APIS:
            raise JosError("15")
        token = p.get("access_token")
        if not token:
            raise JosError("18")
        shop = self._shop_by_token.get(token)
        if shop is None or shop in self.expired or (self.token_ttl and self.clock() - self.started > self.token_ttl):
            raise JosError("19")
        return shop

    def _dispatch(self, p: dict[str, str], shop: str) -> dict[str, Any]:
        with self.lock:
            self._business_calls += 1
            n = self._business_calls
            if self.busy_rate and self._events_rng.random() < self.busy_rate:
                raise JosError("65")
            if self.new_order_every_calls and n % self.new_order_every_calls == 0:
                self.create_orders(1)
            if self.status_change_every_calls and n % self.status_change_every_calls == 0:
                self.change_statuses(1)
            try:
                result = self._search(p, shop, encrypted=p["method"].endswith("enSearch"))
                result["apiResult"] = {"success": True, "englishErrCode": "", "chineseErrCode": "", "numberCode": 0}
            except BusinessError as e:
                result = {"apiResult": {"success": False, "englishErrCode": "param error",
                                        "chineseErrCode": str(e), "numberCode": 101}, "orderTotal": 0}
            return {"code": "0", "searchorderinfo_result": result}

    def _search(self, p: dict[str, str], shop: str, *, encrypted: bool) -> dict[str, Any]:
        try:
            q = json.loads(p.get("360buy_param_json") or "{}")
        except ValueError:
            raise BusinessError("360buy_param_json 不是合法的 JSON") from None
        states = [s.strip() for s in str(q.get("order_state") or "").split(",") if s.strip()]
        if not states:
            raise BusinessError("order_state 不能为空")
        if unknown := [s for s in states if s not in STATES]:
            raise BusinessError(f"order_state 不合法: {','.join(unknown)}")
        fields = [f.strip() for f in str(q.get("optional_fields") or "").split(",") if f.strip()]
        if not fields:
            raise BusinessError("optional_fields 不能为空")
        try:
            page = int(q.get("page") or 1)
            page_size = int(q.get("page_size") or 10)
        except (TypeError, ValueError):
            raise BusinessError("page/page_size 必须是数字") from None
        if not 1 <= page_size <= 100:
            raise BusinessError("page_size 最大为 100")
        if page < 1:
            raise BusinessError("page 从 1 开始")
        start_s, end_s = q.get("start_date"), q.get("end_date")
        now = self.clock()
        if not start_s and not end_s and states == ["WAIT_SELLER_STOCK_OUT"]:
            end, start = now, add_month(now - 31 * 86400)
        else:
            if not start_s or not end_s:
                raise BusinessError("start_date 和 end_date 必填")
            try:
                start, end = parse(str(start_s)), parse(str(end_s))
            except ValueError:
                raise BusinessError("时间格式为 yyyy-MM-dd HH:mm:ss") from None
            if end < start:
                raise BusinessError("end_date 早于 start_date")
            if end > add_month(start):
                raise BusinessError("查询时间跨度不能超过一个月")
        by_created = str(q.get("dateType", "")) == "1"
        newest_first = str(q.get("sortType", "")) == "1"
        if by_created:
            ids = sorted((oid for oid, s in self.book.shop_of.items()
                          if s == shop and start <= self.book.created[oid] <= end),
                         key=lambda oid: (self.book.created[oid], oid), reverse=newest_first)
        else:
            ids = self.book.between(shop, start, end, newest_first=newest_first)
        ids = [oid for oid in ids if self.book.orders[oid]["orderState"] in states]
        chunk = ids[(page - 1) * page_size: page * page_size]
        return {"orderTotal": len(ids),
                "orderInfoList": [_project(self.book.orders[oid], fields, encrypted) for oid in chunk]}


def token_key(seed: int, shop: str) -> str:
    """The (fake) access token the sandbox issues to ``shop``; deterministic so another process can know it."""
    return hashlib.sha1(f"jd:{seed}:{shop}".encode()).hexdigest()[:32]


def seed_key(seed: int) -> str:
    return f"jd-open-id-{seed}"


def _project(o: dict[str, Any], fields: list[str], encrypted: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        if f not in o:
            continue
        v = o[f]
        if f == "consigneeInfo":
            v = {k: x for k, x in v.items() if k != "_encrypt"}
            if encrypted:
                v.update(o[f]["_encrypt"])
        elif f in ("itemInfoList", "couponDetailList"):
            v = [dict(x) for x in v]
        out[f] = v
    return out


def make_app(**settings: Any) -> JDSandbox:
    """Build the JOS sandbox; fault settings go to the base :class:`Faults`, the rest to :class:`JDSandbox`."""
    faults = faults_from(settings)
    return JDSandbox(faults=faults, **settings)
