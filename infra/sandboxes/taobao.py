"""Taobao/Tmall TOP sandbox: ``POST /router/rest`` as the gateway answers it (reference §1, sandbox notes §1.7).

What it checks, in gateway order, each with TOP's own ``error_response`` code: app key (28/29), the app's call
limit with bans (7, ``This ban will last for N more seconds``), signature for md5 / hmac / hmac-sha256
(24/25), timestamp within ±10 minutes (30/31), version (32/34), method (21/22), format (23), session (26/27,
``invalid-sessionkey`` / ``session-expired``), then the API's own arguments (40/41: page_size ≤ 100, window ≤ 1
day, last 3 months only).

APIs: ``taobao.trades.sold.increment.get`` (modified window, newest first, ``total_results`` or ``has_next``,
default ``type`` filter of five types, no ``buyer_message`` in the list) and ``taobao.trade.fullinfo.get``.

Data: deterministic seeded shops (``seed``, ``shops``, ``orders_per_shop``, ``history_hours``) whose orders move
on through the Taobao status machine (:meth:`TaobaoSandbox.change_statuses`) and new orders that arrive while
a client syncs (``new_order_every_calls``, ``status_change_every_calls``). Ground truth for tests:
:meth:`TaobaoSandbox.orders_modified_between`, :meth:`all_tids`, :meth:`versions`, :attr:`limiter` (bans, calls
during a ban), :attr:`log`; ``GET /_sandbox/stats`` and ``GET /_sandbox/calls`` give them to another process
(the benchmark). ``freeze_gc=true`` freezes a big seeded book out of the garbage collector (benchmarks).

Run by hand: ``orderhub-sandbox taobao --port 8801 --set shops=2 --set orders_per_shop=100 --set qps_limit=5``.
The generic pieces (:class:`BanLimiter`, :class:`OrderBook`, :func:`faults_from`) live in :mod:`.common`.
"""
from __future__ import annotations

import gc
import hashlib
import hmac
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from orderhub.connectors.common.privacy import mask_address, mask_name, mask_phone
from orderhub.infra.sandboxes.base import Faults, Request, Response, SandboxApp
from orderhub.infra.sandboxes.common import (
    SHANGHAI, BanLimiter, BookGroundTruth, CallLog, OrderBook, faults_from, fmt, parse, pick,
    shop_names, stats_of,
)

TIMESTAMP_SKEW = 600                       # TOP: ±10 minutes
DEFAULT_TYPES = {"guarantee_trade", "auto_delivery", "ec", "cod", "step"}
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")
TERMINAL = {"TRADE_FINISHED", "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"}
LIST_HIDDEN = {"buyer_message"}            # the list APIs return partial data; fullinfo has the rest


# ================================================================================================================
# TOP
# ================================================================================================================
def expected_sign(params: dict[str, str], secret: str, method: str) -> str:
    """The gateway's side of TOP signing (§1.2): every received param except ``sign`` and empty values."""
    s = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v != "").encode("utf-8")
    key = secret.encode("utf-8")
    if method == "md5":
        return hashlib.md5(key + s + key).hexdigest().upper()
    digestmod = hashlib.md5 if method == "hmac" else hashlib.sha256
    return hmac.new(key, s, digestmod).hexdigest().upper()


def verify_sign(params: dict[str, str], secret: str) -> bool:
    """True if ``params['sign']`` is right for ``params['sign_method']`` (default md5)."""
    method = params.get("sign_method") or "md5"
    if method not in SIGN_METHODS or not params.get("sign"):
        return False
    return hmac.compare_digest(expected_sign(params, secret, method), params["sign"])


class TopError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


TRADE_NEXT: dict[str, list[tuple[str, float]]] = {
    "WAIT_BUYER_PAY": [("WAIT_SELLER_SEND_GOODS", 0.85), ("TRADE_CLOSED_BY_TAOBAO", 0.15)],
    "WAIT_SELLER_SEND_GOODS": [("WAIT_BUYER_CONFIRM_GOODS", 0.75), ("refund", 0.25)],
    "SELLER_CONSIGNED_PART": [("WAIT_BUYER_CONFIRM_GOODS", 1.0)],
    "PAID_FORBID_CONSIGN": [("WAIT_SELLER_SEND_GOODS", 1.0)],
    "WAIT_BUYER_CONFIRM_GOODS": [("TRADE_FINISHED", 1.0)],
}
SEED_STATUS = [("WAIT_BUYER_PAY", 8), ("WAIT_SELLER_SEND_GOODS", 40), ("SELLER_CONSIGNED_PART", 3),
               ("PAID_FORBID_CONSIGN", 2), ("WAIT_BUYER_CONFIRM_GOODS", 22), ("TRADE_FINISHED", 18),
               ("TRADE_CLOSED", 3), ("TRADE_CLOSED_BY_TAOBAO", 4)]
PRODUCTS = [("奔驰C200 原厂刹车片", "MB-C200-BP", "89.00"), ("宝马3系 机油滤芯", "BMW-3-OF", "45.50"),
            ("奥迪A4L 空气滤芯", "AUDI-A4L-AF", "38.00"), ("大众帕萨特 雨刮器", "VW-PS-WB", "66.00"),
            ("丰田凯美瑞 火花塞(4支)", "TY-CAM-SP4", "152.00"), ("本田雅阁 刹车盘", "HD-AC-BD", "420.00"),
            ("通用 5W-30 全合成机油 4L", "GEN-5W30-4L", "269.00"), ("车载手机支架", "ACC-PH-01", "29.90")]
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴婷"]
PLACES = [("浙江省", "杭州市", "西湖区", "文三路 478 号华星时代广场"), ("广东省", "深圳市", "南山区", "科技园南区 12 栋"),
          ("北京", "北京市", "朝阳区", "建国路 88 号 SOHO 现代城"), ("江苏省", "苏州市", "工业园区", "星湖街 328 号"),
          ("上海", "上海市", "浦东新区", "张江高科碧波路 690 号"), ("四川省", "成都市", "武侯区", "天府大道中段 1268 号")]
MESSAGES = ["加急，今天务必发货", "请用顺丰", "送货前电话联系", "发票抬头：杭州某某汽配有限公司", "不要放快递柜"]
TRADE_TYPES_SEEN = [("fixed", 55), ("guarantee_trade", 20), ("step", 8), ("cod", 5), ("tmall_i18n", 7),
                    ("auto_delivery", 5)]


def session_key(seed: int, shop: str) -> str:
    """The (fake) session key the sandbox issues to ``shop``; deterministic so a separate process can know it."""
    return "6201" + hashlib.sha1(f"{seed}:{shop}".encode()).hexdigest()[:28]


class TaobaoSandbox(BookGroundTruth, SandboxApp):
    """The TOP gateway for one or more apps and seeded shops. See the module doc for the settings."""

    name = "taobao"
    PATH = "/router/rest"

    def __init__(self, *, app_key: str = "test-app", app_secret: str = "test-secret", seed: int = 7,
                 shops: Any = 3, orders_per_shop: int = 40, history_hours: float = 48.0,
                 base_time: float | None = None, qps_limit: float = 0.0, ban_seconds: float = 30.0,
                 daily_quota: int = 0, session_ttl_seconds: float = 0.0, expired_shops: Any = (),
                 new_order_every_calls: int = 0, status_change_every_calls: int = 0,
                 buyer_message_rate: float = 0.2, isp_error_rate: float = 0.0, freeze_gc: bool = False,
                 clock: Callable[[], float] = time.time, faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.clock = clock
        self.apps = {str(app_key): str(app_secret)}
        self.seed = seed
        self.shops = shop_names(shops, "shop")
        self.sessions = {s: session_key(seed, s) for s in self.shops}
        self._shop_by_session = {v: k for k, v in self.sessions.items()}
        self.nicks = {s: f"orderhub测试{s}" for s in self.shops}
        self.started = clock()
        self.session_ttl = float(session_ttl_seconds)
        self.expired: set[str] = set(shop_names(expired_shops, "shop")) if expired_shops else set()
        self.limiter = BanLimiter(float(qps_limit), float(ban_seconds), clock=clock)
        self.daily_quota = int(daily_quota)
        self.new_order_every_calls = int(new_order_every_calls)
        self.status_change_every_calls = int(status_change_every_calls)
        self.buyer_message_rate = float(buyer_message_rate)
        self.isp_error_rate = float(isp_error_rate)
        self.book = OrderBook()
        self.log = CallLog()
        self.created_during_run: list[str] = []
        self._business_calls = 0
        self._req_ids = itertools.count(1)
        self._events_rng = random.Random(f"{seed}:events")
        self._tid_seq = itertools.count(0)
        self._oid_seq = itertools.count(0)
        base = math.floor(base_time if base_time is not None else clock())
        for i, shop in enumerate(self.shops):
            rng = random.Random(f"{seed}:{shop}")
            for _ in range(int(orders_per_shop)):
                created = base - rng.randint(120, max(121, int(history_hours * 3600)))
                modified = min(base - 60, created + rng.randint(0, 6 * 3600))
                self._new_trade(shop, rng, created, modified, pick(rng, SEED_STATUS), bulk=True)
        self.book.reindex()
        self._fragments: dict[str, tuple[tuple, bytes]] = {}   # tid → (fields asked, JSON of the trade)
        if freeze_gc:
            # For big books in their own process (benchmarks): full GC passes over millions of seeded objects
            # stall the server long enough to bunch up request arrival times. Requests make no reference
            # cycles, so freezing the book and switching the cycle collector off loses nothing.
            gc.collect()
            gc.freeze()
            gc.disable()

    # --- data ---------------------------------------------------------------------------------------------------
    def _new_trade(self, shop: str, rng: random.Random, created: int, modified: int, status: str, *,
                   bulk: bool = False) -> str:
        # 19-digit ids above 2^53, unique: shop offset + sequence * 7 + a random 0..6
        tid = (3725362658800000000 + self.shops.index(shop) * 10_000_000_000 + next(self._tid_seq) * 7
               + rng.randint(0, 6))
        name = rng.choice(NAMES)
        province, city, district, street = rng.choice(PLACES)
        mobile = f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}"
        lines = []
        total = Decimal("0")
        paid = status not in ("WAIT_BUYER_PAY", "TRADE_CLOSED_BY_TAOBAO")
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            title, code, price = rng.choice(PRODUCTS)
            num = rng.choice([1, 1, 2, 3, 5])
            fee = Decimal(price) * num
            total += fee
            oid = 2276684604172000000 + next(self._oid_seq) * 3 + rng.randint(0, 2)
            line_status = status if status != "SELLER_CONSIGNED_PART" else rng.choice(
                ["WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_CONFIRM_GOODS"])
            lines.append({
                "oid": oid, "oid_str": str(oid), "status": line_status, "refund_status": "NO_REFUND",
                "num_iid": 600000000000 + int(hashlib.md5(code.encode()).hexdigest()[:8], 16),
                "sku_id": str(5000000000000 + rng.randint(0, 10**9)),
                "outer_iid": code.rsplit("-", 1)[0], "outer_sku_id": code, "title": title,
                "sku_properties_name": "颜色分类:标准款", "price": price, "num": num, "total_fee": f"{fee:.2f}",
                "payment": f"{fee:.2f}", "discount_fee": "0.00", "adjust_fee": "0.00", "divide_order_fee": f"{fee:.2f}",
                "store_code": "", "is_oversold": False,
            })
        discount = Decimal(rng.choice(["0.00", "0.00", "5.00", "10.00"])).min(total)
        post_fee = Decimal(rng.choice(["0.00", "0.00", "8.00", "12.00"]))
        payment = total - discount + post_fee
        if discount and lines:
            first = lines[0]
            first["divide_order_fee"] = f"{Decimal(first['total_fee']) - discount:.2f}"
        has_message = rng.random() < self.buyer_message_rate
        seller_memo = rng.choice(["", "", "", "加急", "VIP 客户，优先安排"])
        trade = {
            "tid": tid, "tid_str": str(tid), "status": status, "type": pick(rng, TRADE_TYPES_SEEN),
            "created": fmt(created), "modified": fmt(modified),
            "pay_time": fmt(created + rng.randint(10, 600)) if paid else None,
            "consign_time": fmt(modified) if status in ("WAIT_BUYER_CONFIRM_GOODS", "TRADE_FINISHED") else None,
            "end_time": fmt(modified) if status in TERMINAL else None,
            "payment": f"{payment:.2f}", "total_fee": f"{total:.2f}", "post_fee": f"{post_fee:.2f}",
            "discount_fee": f"{discount:.2f}", "adjust_fee": "0.00",
            "received_payment": f"{payment:.2f}" if status == "TRADE_FINISHED" else "0.00",
            "buyer_nick": mask_name(rng.choice(["tb", "买家", "汽配", "小"]) + str(rng.randint(100, 999))),
            "buyer_open_uid": "AAH" + hashlib.sha1(f"{shop}{name}{mobile}".encode()).hexdigest()[:20],
            "seller_nick": self.nicks[shop], "has_buyer_message": has_message,
            "buyer_message": rng.choice(MESSAGES) if has_message else None,
            "seller_memo": seller_memo or None, "seller_flag": 1 if seller_memo else 0,
            # desensitized receiver + OAID (§1.6): plaintext never leaves the platform
            "receiver_name": mask_name(name), "receiver_state": province, "receiver_city": city,
            "receiver_district": district, "receiver_town": None, "receiver_address": mask_address(street),
            "receiver_zip": "000000", "receiver_mobile": mask_phone(mobile), "receiver_phone": None,
            "receiver_country": "",
            "oaid": hashlib.sha256(f"{self.seed}{name}{mobile}{street}".encode()).hexdigest()[:40],
            "shipping_type": "express", "trade_from": "WAP,WAP", "invoice_kind": rng.choice(["", "", "1"]) or None,
            "orders": {"order": lines},
        }
        if trade["type"] == "step":
            trade["step_trade_status"] = "FRONT_PAID_FINAL_PAID" if paid else "FRONT_NOPAID_FINAL_NOPAID"
        if trade["invoice_kind"]:
            trade["invoice_name"] = "杭州某某汽配有限公司"
        if rng.random() < 0.3:
            trade["receiver_town"] = "某某街道"
        if rng.random() < 0.2:
            trade["receiver_phone"] = mask_phone(f"0571-{rng.randint(80000000, 89999999)}")
        self.book.put(shop, str(tid), trade, created, modified, bulk=bulk)
        return str(tid)

    def create_orders(self, n: int = 1, shop: str | None = None) -> list[str]:
        """New paid orders arriving now (modified = created = now); returns their ``tid_str``."""
        out = []
        with self.lock:
            now = math.floor(self.clock())
            for k in range(n):
                s = shop or self.shops[(len(self.created_during_run) + k) % len(self.shops)]
                rng = random.Random(f"{self.seed}:new:{len(self.created_during_run)}:{k}")
                tid = self._new_trade(s, rng, now, now, "WAIT_SELLER_SEND_GOODS")
                out.append(tid)
            self.created_during_run.extend(out)
        return out

    def change_statuses(self, n: int = 1, shop: str | None = None) -> list[str]:
        """Move ``n`` open orders one step on (paid, shipped, refund asked/agreed, finished…), modified = now."""
        changed: list[str] = []
        with self.lock:
            now = math.floor(self.clock())
            open_ids = sorted(oid for oid, t in self.book.orders.items()
                              if t["status"] not in TERMINAL and (shop is None or self.book.shop_of[oid] == shop))
            for oid in self._events_rng.sample(open_ids, min(n, len(open_ids))):
                self._advance(self.book.orders[oid], now)
                self.book.touch(oid, now)
                self._fragments.pop(oid, None)
                changed.append(oid)
        return changed

    def _advance(self, t: dict[str, Any], now: int) -> None:
        lines = t["orders"]["order"]
        refunding = [ln for ln in lines if ln["refund_status"] == "WAIT_SELLER_AGREE"]
        if refunding:
            for ln in refunding:
                ln["refund_status"], ln["status"] = "SUCCESS", "TRADE_CLOSED"
            if all(ln["status"] == "TRADE_CLOSED" for ln in lines):
                t["status"], t["end_time"] = "TRADE_CLOSED", fmt(now)
        else:
            step = pick(self._events_rng, TRADE_NEXT.get(t["status"], [("TRADE_FINISHED", 1.0)]))
            if step == "refund":
                lines[0]["refund_status"] = "WAIT_SELLER_AGREE"
            else:
                t["status"] = step
                for ln in lines:
                    if ln["status"] != "TRADE_CLOSED":
                        ln["status"] = step
                if step == "WAIT_SELLER_SEND_GOODS":
                    t["pay_time"] = fmt(now)
                elif step == "WAIT_BUYER_CONFIRM_GOODS":
                    t["consign_time"] = fmt(now)
                elif step in TERMINAL:
                    t["end_time"] = fmt(now)
        t["modified"] = fmt(now)

    # --- ground truth for tests ---------------------------------------------------------------------------------
    all_tids = BookGroundTruth.all_ids

    def trade(self, tid: str) -> dict[str, Any]:
        with self.lock:
            return _copy_trade(self.book.orders[str(tid)])

    def expire_session(self, shop: str) -> None:
        self.expired.add(shop)

    # --- gateway ------------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        if req.method == "GET" and req.path == "/_sandbox/stats":
            return Response(200, stats_of(self))
        if req.method == "GET" and req.path == "/_sandbox/calls":
            return Response(200, [[round(e[0], 4), e[2], e[3], e[4]] for e in list(self.log.entries)])
        if req.path.rstrip("/") != self.PATH:
            return Response(404, {"error": f"not found: {req.path}; the TOP gateway is {self.PATH}"})
        p = req.form()
        arrived = self.clock()
        rid = f"{next(self._req_ids):x}sbx"
        shop = None
        try:
            shop = self._check(p)
            body = self._dispatch(p, shop)
            body["request_id"] = rid
            self.log.add(arrived, p.get("app_key", ""), p.get("method", ""), shop, 0)
            return Response(200, _envelope(_response_key(p["method"]), body))
        except TopError as e:
            self.log.add(arrived, p.get("app_key", ""), p.get("method", ""), shop, e.code)
            err: dict[str, Any] = {"code": e.code, "msg": e.msg}
            if e.sub_code:
                err["sub_code"] = e.sub_code
            if e.sub_msg:
                err["sub_msg"] = e.sub_msg
            err["request_id"] = rid
            return Response(200, {"error_response": err})

    def _check(self, p: dict[str, str]) -> str | None:
        app_key = p.get("app_key")
        if not app_key:
            raise TopError(28, "Missing App Key")
        secret = self.apps.get(app_key)
        if secret is None:
            raise TopError(29, "Invalid App Key")
        left = self.limiter.admit(app_key)
        if left is not None:
            raise TopError(7, "App Call Limited", "accesscontrol.limited-by-api-access-count",
                           f"This ban will last for {left} more seconds")
        if self.daily_quota and self.limiter.accepted > self.daily_quota:
            midnight = (datetime.fromtimestamp(self.clock(), SHANGHAI) + timedelta(days=1)).replace(
                hour=0, minute=0, second=0, microsecond=0).timestamp()
            raise TopError(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                           f"This ban will last for {math.ceil(midnight - self.clock())} more seconds")
        if not p.get("sign"):
            raise TopError(24, "Missing Signature")
        sign_method = p.get("sign_method") or "md5"
        if sign_method not in SIGN_METHODS:
            raise TopError(25, "Invalid Signature", "isv.invalid-signature", f"unsupported sign_method {sign_method}")
        if not verify_sign(p, secret):
            raise TopError(25, "Invalid Signature")
        ts = p.get("timestamp")
        if not ts:
            raise TopError(30, "Missing Timestamp")
        try:
            when = int(ts) / 1000.0 if ts.isdigit() else parse(ts)
        except ValueError:
            raise TopError(31, "Invalid Timestamp", sub_msg="timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8)") from None
        if abs(when - self.clock()) > TIMESTAMP_SKEW:
            raise TopError(31, "Invalid Timestamp",
                           sub_msg="timestamp differs from the server time by more than 10 minutes")
        if not p.get("v"):
            raise TopError(32, "Missing Version")
        if p["v"] != "2.0":
            raise TopError(34, "Unsupported Version")
        method = p.get("method")
        if not method:
            raise TopError(21, "Missing Method")
        if method not in self.APIS:
            raise TopError(22, "Invalid Method")
        if (p.get("format") or "xml") != "json":
            raise TopError(23, "Invalid Format", sub_msg="this sandbox answers format=json only")
        session = p.get("session")
        if not session:
            raise TopError(26, "Missing Session")
        shop = self._shop_by_session.get(session)
        if shop is None:
            raise TopError(27, "Invalid session", "invalid-sessionkey",
                           "非法或过期的SessionKey参数，请使用有效的SessionKey参数")
        if shop in self.expired or (self.session_ttl and self.clock() - self.started > self.session_ttl):
            raise TopError(27, "Invalid session", "session-expired", "SessionKey已过期，请重新授权")
        return shop

    APIS = ("taobao.trades.sold.increment.get", "taobao.trade.fullinfo.get")

    def _dispatch(self, p: dict[str, str], shop: str | None) -> dict[str, Any]:
        assert shop is not None
        with self.lock:
            self._business_calls += 1
            n = self._business_calls
            if self.isp_error_rate and self._events_rng.random() < self.isp_error_rate:
                raise TopError(15, "Remote service error", "isp.remote-service-timeout", "服务超时，请稍后重试")
            if self.new_order_every_calls and n % self.new_order_every_calls == 0:
                self.create_orders(1)
            if self.status_change_every_calls and n % self.status_change_every_calls == 0:
                self.change_statuses(1)
            if p["method"] == "taobao.trades.sold.increment.get":
                return self._increment_get(p, shop)
            return self._fullinfo_get(p, shop)

    def _fields(self, p: dict[str, str]) -> tuple[list[str], list[str] | None]:
        fields = [f.strip() for f in (p.get("fields") or "").split(",") if f.strip()]
        if not fields:
            raise TopError(40, "Missing Required Arguments", "isv.missing-parameter", "fields is required")
        header = [f for f in fields if not f.startswith("orders")]
        line: list[str] | None = None
        if "orders" in fields:
            line = []  # all line fields
        sub = [f.split(".", 1)[1] for f in fields if f.startswith("orders.")]
        if sub:
            line = (line or []) + sub
        return header, line

    def _increment_get(self, p: dict[str, str], shop: str) -> dict[str, Any]:
        header, line = self._fields(p)
        try:
            start, end = parse(p["start_modified"]), parse(p["end_modified"])
        except KeyError as e:
            raise TopError(40, "Missing Required Arguments", "isv.missing-parameter",
                           f"{e.args[0]} is required") from None
        except ValueError:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter",
                           "start_modified/end_modified must be yyyy-MM-dd HH:mm:ss") from None
        if end < start:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter", "end_modified is before start_modified")
        if end - start > 86400:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter:end_modified",
                           "end_modified - start_modified must not exceed one day")
        if start < self.clock() - 90 * 86400:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter:start_modified",
                           "only trades of the last three months can be read")
        try:
            page_no = int(p.get("page_no") or 1)
            page_size = int(p.get("page_size") or 40)
        except ValueError:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter",
                           "page_no/page_size must be numbers") from None
        if not 1 <= page_size <= 100:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter:page_size", "page_size must be 1..100")
        if page_no < 1:
            raise TopError(41, "Invalid Arguments", "isv.invalid-parameter:page_no", "page_no must be >= 1")
        types = {t.strip() for t in (p.get("type") or "").split(",") if t.strip()} or DEFAULT_TYPES
        status = p.get("status")
        ids = [oid for oid in self.book.between(shop, start, end)
               if self.book.orders[oid]["type"] in types and (not status or self.book.orders[oid]["status"] == status)]
        page = ids[(page_no - 1) * page_size: page_no * page_size]
        body: dict[str, Any] = {"_trades": [self._fragment(oid, header, line) for oid in page]}
        if (p.get("use_has_next") or "").lower() == "true":
            body["has_next"] = page_no * page_size < len(ids)
        else:
            body["total_results"] = len(ids)
        return body

    def _fullinfo_get(self, p: dict[str, str], shop: str) -> dict[str, Any]:
        header, line = self._fields(p)
        tid = (p.get("tid") or "").strip()
        if not tid:
            raise TopError(40, "Missing Required Arguments", "isv.missing-parameter", "tid is required")
        t = self.book.orders.get(tid)
        if t is None or self.book.shop_of[tid] != shop:
            raise TopError(15, "Remote service error", "isv.trade-not-exist", "交易不存在")
        return {"trade": _project(t, header, line, hide=set())}


    def _fragment(self, oid: str, header: list[str], line: list[str] | None) -> bytes:
        """The JSON of one listed trade, cached until the trade changes (keeps the sandbox fast)."""
        key = (tuple(header), None if line is None else tuple(line))
        hit = self._fragments.get(oid)
        if hit is not None and hit[0] == key:
            return hit[1]
        data = json.dumps(_project(self.book.orders[oid], header, line, hide=LIST_HIDDEN), ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        self._fragments[oid] = (key, data)
        return data


def _envelope(key: str, body: dict[str, Any]) -> dict[str, Any] | bytes:
    """``{key: body}``; a body with pre-encoded ``_trades`` is assembled as bytes (``trades.trade[]``)."""
    raw = body.pop("_trades", None)
    if raw is None:
        return {key: body}
    rest = json.dumps(body, ensure_ascii=False, separators=(",", ":"))[1:-1].encode("utf-8")
    trades = b'"trades":{' + (b'"trade":[' + b",".join(raw) + b"]" if raw else b"") + b"}"
    return b'{"' + key.encode() + b'":{' + trades + (b"," + rest if rest else b"") + b"}}"


def _response_key(method: str) -> str:
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


def _project(t: dict[str, Any], header: Iterable[str], line: list[str] | None, *, hide: set[str]) -> dict[str, Any]:
    out = {f: t[f] for f in header if f in t and f not in hide and t[f] is not None}
    if line is not None:
        lines = t["orders"]["order"]
        out["orders"] = {"order": [dict(ln) if not line else {f: ln[f] for f in line if f in ln} for ln in lines]}
    return out


def _copy_trade(t: dict[str, Any]) -> dict[str, Any]:
    out = dict(t)
    out["orders"] = {"order": [dict(ln) for ln in t["orders"]["order"]]}
    return out


def make_app(**settings: Any) -> TaobaoSandbox:
    """Build the TOP sandbox; fault settings (``error_rate``, ``timeout_rate``, ``slow_rate``,
    ``malformed_rate``, ``fault_seed``…) go to the base :class:`Faults`, the rest to :class:`TaobaoSandbox`."""
    faults = faults_from(settings)
    return TaobaoSandbox(faults=faults, **settings)
