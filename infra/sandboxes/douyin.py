"""Doudian (抖店) sandbox: a local gateway that signs, pages, limits and fails like openapi-fxg (reference §4.7).

* ``POST /{a}/{b}`` with the system parameters (``app_key``, ``method``, ``access_token``, ``timestamp``,
  ``v=2``, ``sign``, ``sign_method``) in the query string and ``param_json`` as the raw JSON body. The gateway
  checks ``method`` against the path, re-canonicalises the body (keys sorted at every depth, compact,
  ``ensure_ascii=False``), recomputes the sign with HMAC-SHA256 or MD5 (no ``sign_method`` ⇒ md5) (§4.2), checks
  the timestamp, maps the token to its shop and answers in the new error-code scheme (§4.5): 40001/40003 with
  ``isv.*`` sub codes, 60000 when rate limited.
* ``order.searchList``: ``update_time_start``/``update_time_end`` or create times (unix seconds, inclusive),
  ``page`` from 0, ``size`` ≤ 100, ``order_by`` + ``order_asc``; amounts in fen; receiver only as ``mask_*`` and
  ``encrypt_*`` fields. Orders with more than ``list_max_lines`` sku orders are listed with an empty
  ``sku_order_list``; ``order.orderDetail`` returns them.
* App-level QPS limit with bans (:class:`~orderhub.infra.sandboxes.alibaba1688.QpsBan`), token expiry, seeded
  deterministic shops whose orders move along their status lifecycle (:meth:`DouyinSandbox.advance`) and new
  orders arriving mid-sync (``churn_per_list_call`` / :attr:`on_list_call`).

Sandbox assumptions (not documented by Doudian): the ban length is announced in ``sub_msg`` ("This ban will last
for N more seconds"); the timestamp tolerance is ``timestamp_tolerance`` seconds; an update-time window longer
than ``max_window_days`` is refused with 40004.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import uuid
from typing import Any, Callable

from orderhub.connectors.common.privacy import mask_name, mask_phone
from orderhub.connectors.douyin.client import doudian_sign, method_path, param_json
from orderhub.infra.sandboxes.base import Faults, Request, Response, SandboxApp
from orderhub.infra.sandboxes.common import QpsBan, TokenShops, faults_from

PRODUCTS = [  # (code, product name, unit price fen, spec)
    ("DY-TEA-250", "明前龙井 250g 礼盒", 16800, "250g"),
    ("DY-CUP-350", "304保温杯 350ml", 5900, "曜石黑"),
    ("DY-TWL-3P", "纯棉毛巾 三条装", 3990, "灰色"),
    ("DY-SOCK-5", "中筒运动袜 5双", 2990, "L"),
    ("DY-PAN-28", "麦饭石不粘锅 28cm", 12900, "28cm"),
    ("DY-SOAP-3", "手工皂 3块装", 4500, "玫瑰"),
    ("DY-BAG-XL", "加厚收纳袋 XL", 1990, "透明"),
]
PLACES = [  # (province, city, district, street) names with division ids
    (("浙江省", "33"), ("杭州市", "3301"), ("西湖区", "330106"), ("文三路", "330106001")),
    (("广东省", "44"), ("广州市", "4401"), ("天河区", "440106"), ("体育西路", "440106002")),
    (("四川省", "51"), ("成都市", "5101"), ("武侯区", "510107"), ("科华北路", "510107003")),
    (("湖北省", "42"), ("武汉市", "4201"), ("洪山区", "420111"), ("珞喻路", "420111004")),
]
PEOPLE = ["周杰", "吴倩", "郑凯", "孙丽", "马超", "朱婷", "胡军", "林芳"]
STATUS_DESC = {1: "待支付", 105: "已支付", 2: "备货中", 101: "部分发货", 3: "已发货", 4: "已取消", 5: "已完成"}
NEXT = {1: 105, 105: 2, 2: 3, 101: 3, 3: 5}


def _envelope(code: int, msg: str, sub_code: str = "", sub_msg: str = "", data: Any = None) -> Response:
    return Response(200, {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg,
                          "log_id": uuid.uuid4().hex[:24], "data": data})


def _cipher(*parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).digest()[:24]
    return "#" + base64.b64encode(digest).decode() + "#"


class DouyinSandbox(TokenShops, SandboxApp):
    name = "douyin"

    def __init__(self, *, app_key: str = "1234567890123456789", app_secret: str = "test-secret", seed: int = 2016,
                 shops: tuple[str, ...] | list[str] | str = ("4463798", "5520131"), orders_per_shop: int = 60,
                 history_hours: float = 72.0, base_time: float | None = None, history_gap_seconds: float = 120.0,
                 max_page_size: int = 100,
                 max_window_days: float = 7.0, qps_limit: float = 50.0, ban_seconds: float = 5.0,
                 ban_extends: bool = True, timestamp_tolerance: float = 600.0, token_ttl: float = 7 * 86400.0,
                 list_max_lines: int = 3, churn_per_list_call: int = 0, auto_advance_seconds: float = 0.0,
                 faults: Faults | None = None) -> None:
        super().__init__(faults)
        self.app_key, self.app_secret = str(app_key), str(app_secret)
        self.shops = [s.strip() for s in shops.split(",")] if isinstance(shops, str) else [str(s) for s in shops]
        self.max_page_size, self.max_window_days = int(max_page_size), float(max_window_days)
        self.timestamp_tolerance, self.token_ttl = float(timestamp_tolerance), float(token_ttl)
        self.list_max_lines, self.churn_per_list_call = int(list_max_lines), int(churn_per_list_call)
        self.auto_advance_seconds = float(auto_advance_seconds)
        self.limiter = QpsBan(qps_limit, ban_seconds, extend=bool(ban_extends))
        self.clock: Callable[[], float] = time.time
        self.base_time = int(base_time if base_time is not None else self.clock())
        self.rng = random.Random(seed)
        self.history_gap = float(history_gap_seconds)
        self.orders: dict[str, dict] = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self.calls: list[dict] = []
        self.list_calls = 0
        self.on_list_call: Callable[["DouyinSandbox", str, int], None] | None = None
        self._seq = 0
        self._last_auto = self.clock()
        for shop in self.shops:
            self.tokens[f"{shop}-dy-token-{seed}"] = (shop, self.base_time + self.token_ttl)
            for _ in range(int(orders_per_shop)):
                self._new_order(shop, self.base_time - int(self.rng.uniform(self.history_gap, history_hours * 3600)),
                                seeded=True)

    # --- ground truth for tests ------------------------------------------------------------------------------------
    def versions(self, shop: str | None = None) -> dict[str, int]:
        """``{order id: update_time}``."""
        return {oid: o["updated"] for oid, o in self.orders.items() if shop is None or o["shop"] == shop}

    def shop_order(self, order_id: str) -> dict:
        """The order as ``order.orderDetail`` returns it."""
        return self._render(self.orders[order_id], lines=True)

    def advance(self, n: int = 1, shop: str | None = None, *, ids: list[str] | None = None) -> list[str]:
        """Move ``n`` open orders (or the open ones among ``ids``) one step along their lifecycle, or finish a
        pending after-sale. ``update_time`` = now."""
        with self.lock:
            open_ids = sorted(oid for oid, o in self.orders.items()
                              if o["status"] in NEXT and (shop is None or o["shop"] == shop))
            picked = [i for i in ids if i in open_ids] if ids else self.rng.sample(open_ids, min(n, len(open_ids)))
            now = int(self.clock())
            for oid in picked:
                o = self.orders[oid]
                pending = [ln for ln in o["lines"] if ln["after_sale"] == 6]
                if pending:
                    pending[0]["after_sale"], pending[0]["refund"] = 12, 3
                    o["updated"] = now
                    continue
                st = o["status"]
                nxt = 4 if st == 1 and self.rng.random() < 0.2 else \
                    101 if st == 2 and len(o["lines"]) > 1 and self.rng.random() < 0.3 else NEXT[st]
                self._set_status(o, nxt, now)
            return picked

    def add_orders(self, shop: str, n: int = 1) -> list[str]:
        with self.lock:
            return [self._new_order(shop, int(self.clock()), seeded=False) for _ in range(n)]

    # --- data ------------------------------------------------------------------------------------------------------
    def _new_order(self, shop: str, created: int, *, seeded: bool) -> str:
        r = self.rng
        self._seq += 1
        oid = str(6_900_000_000_000_000_000 + self.shops.index(shop) * 10**14 + self._seq * 104729)
        n_lines = r.choice([1, 1, 1, 2, 2, 3, 4, 5]) if seeded else r.choice([1, 2, 4])
        lines = []
        for j, (code, name, price, spec) in enumerate(r.sample(PRODUCTS, n_lines)):
            num = r.choice([1, 1, 2, 3])
            promo = r.choice([0, 0, 500]) if price * num > 1000 else 0
            lines.append({"id": str(int(oid) + j + 1), "code": code, "name": name, "price": price, "spec": spec,
                          "num": num, "promo": promo, "gift": False, "after_sale": 0, "refund": 0,
                          "product": 3_500_000_000_000_000_000 + PRODUCTS.index((code, name, price, spec))})
        if r.random() < 0.1:  # a free gift line
            lines.append({"id": str(int(oid) + n_lines + 1), "code": "DY-GIFT-01", "name": "赠品：旅行收纳包",
                          "price": 0, "spec": "随机色", "num": 1, "promo": 0, "gift": True, "after_sale": 0,
                          "refund": 0, "product": 3_500_000_000_000_000_099})
        place = r.choice(PLACES)
        o = {"id": oid, "shop": shop, "status": 1, "created": created, "updated": created, "paid": 0,
             "shipped": 0, "finished": 0, "post": r.choice([0, 0, 600]),
             "buyer_words": r.choice(["", "", "麻烦发顺丰", "尽快发货"]),
             "seller_words": r.choice(["", "", "", "加急", "送小样"]), "stars": r.choice([0, 0, 1, 3]),
             "receiver": {"name": r.choice(PEOPLE), "tel": f"1{r.choice('3578')}{r.randint(100000000, 999999999)}",
                          "place": place, "detail": f"{place[3][0]}{r.randint(1, 400)}号{r.randint(1, 30)}栋"},
             "open_id": f"1@#{uuid.uuid5(uuid.NAMESPACE_OID, oid).hex[:24]}", "lines": lines, "tracking": ""}
        self.orders[oid] = o
        if seeded:
            target = r.choices([1, 105, 2, 101, 3, 5, 4], weights=[8, 10, 20, 5, 25, 25, 7])[0]
            path = {1: [], 105: [105], 2: [105, 2], 101: [105, 2, 101], 3: [105, 2, 3], 5: [105, 2, 3, 5], 4: [4]}
            t, last = created, int(self.base_time - self.history_gap)
            for st in path[target]:
                t = max(o["updated"], min(last, t + int(r.uniform(60, 6 * 3600))))
                self._set_status(o, st, t)
            if target in (3, 5) and r.random() < 0.15:
                o["lines"][0]["after_sale"], o["lines"][0]["refund"] = 6, 1
        return oid

    def _set_status(self, o: dict, status: int, ts: int) -> None:
        o["status"], o["updated"] = status, ts
        if status == 105:
            o["paid"] = ts
        elif status in (3, 101):
            o["shipped"] = o["shipped"] or ts
            o["tracking"] = o["tracking"] or f"YT{o['id'][-12:]}"
        elif status in (4, 5):
            o["finished"] = ts

    def _render(self, o: dict, *, lines: bool) -> dict:
        """One ``shop_order`` (§4.3); amounts in fen, times in unix seconds."""
        rc = o["receiver"]
        prov, city, town, street = rc["place"]
        sku = []
        total = 0
        for i, ln in enumerate(o["lines"]):
            amount = ln["price"] * ln["num"] - ln["promo"]
            total += amount
            line_status = o["status"]
            if o["status"] == 101:  # partially shipped: the first line went out
                line_status = 3 if i == 0 else 2
            sku.append({
                "order_id": ln["id"], "parent_order_id": o["id"], "order_status": line_status,
                "main_status": line_status, "product_id": ln["product"], "product_id_str": str(ln["product"]),
                "sku_id": ln["product"] + 7, "out_sku_id": ln["code"], "out_product_id": ln["code"].rsplit("-", 1)[0],
                "code": ln["code"], "product_name": ln["name"], "spec": [{"name": "规格", "value": ln["spec"]}],
                "item_num": ln["num"], "origin_amount": ln["price"], "sum_amount": ln["price"] * ln["num"],
                "promotion_amount": ln["promo"], "order_amount": amount, "pay_amount": amount if o["paid"] else 0,
                "post_amount": 0, "given_product_type": "FREE" if ln["gift"] else "MASTER",
                "after_sale_info": {"after_sale_status": ln["after_sale"],
                                    "after_sale_type": 1 if ln["after_sale"] else 0, "refund_status": ln["refund"]},
                "create_time": o["created"], "update_time": o["updated"],
            })
        def addr(detail: str) -> dict:
            return {"province": {"name": prov[0], "id": prov[1]}, "city": {"name": city[0], "id": city[1]},
                    "town": {"name": town[0], "id": town[1]}, "street": {"name": street[0], "id": street[1]},
                    "detail": detail}

        post_addr = addr("")
        post_addr["encrypt_detail"] = _cipher(o["id"], "addr", rc["detail"])
        out = {
            "order_id": o["id"], "order_status": o["status"], "order_status_desc": STATUS_DESC[o["status"]],
            "main_status": o["status"], "main_status_desc": STATUS_DESC[o["status"]],
            "create_time": o["created"], "update_time": o["updated"], "pay_time": o["paid"],
            "ship_time": o["shipped"], "finish_time": o["finished"], "exp_ship_time": o["created"] + 48 * 3600,
            "order_amount": total + o["post"], "pay_amount": total + o["post"] if o["paid"] else 0,
            "post_amount": o["post"], "promotion_amount": sum(ln["promo"] for ln in o["lines"]),
            "modify_amount": 0, "tax_amount": 0, "pay_type": 1, "order_type": 0, "b_type": 2, "biz": 2,
            "buyer_words": o["buyer_words"], "seller_words": o["seller_words"],
            "seller_remark_stars": o["stars"], "shop_id": int(o["shop"]), "doudian_open_id": o["open_id"],
            "post_receiver": "", "encrypt_post_receiver": _cipher(o["id"], "name", rc["name"]),
            "mask_post_receiver": mask_name(rc["name"]),
            "post_tel": "", "encrypt_post_tel": _cipher(o["id"], "tel", rc["tel"]),
            "mask_post_tel": mask_phone(rc["tel"]),
            "post_addr": post_addr, "mask_post_addr": addr("***"),
            "logistics_info": [{"tracking_no": o["tracking"], "company": "yuantong", "company_name": "圆通速递",
                                "ship_time": o["shipped"]}] if o["tracking"] else [],
            "sku_order_list": sku if lines else [],
        }
        return out

    # --- gateway ---------------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        q = req.query
        method = q.get("method", "")
        entry = {"t": self.clock(), "method": method, "shop": None, "outcome": "ok", "page": None}
        self.calls.append(entry)
        if req.method != "POST":
            return _envelope(30000, "通用参数错误", "isv.parameter-format-invalid", "请使用 POST")
        if not q.get("app_key"):
            entry["outcome"] = "app_key"
            return _envelope(40001, "缺少必选参数", "isv.app-id-missing", "app_key 不能为空")
        if q["app_key"] != self.app_key:
            entry["outcome"] = "app_key"
            return _envelope(40003, "非法的参数", "isv.app-id-invalid", "app_key 无效")
        if not method or method_path(method) != req.path:
            entry["outcome"] = "method"
            return _envelope(40003, "非法的参数", "isv.parameter-format-invalid", f"method {method!r} 与路径不一致")
        banned = self.limiter.check()
        if banned is not None:
            entry["outcome"] = "banned"
            return _envelope(60000, "触发限流，请稍后重试", "",
                             f"触发限流，请稍后重试 (This ban will last for {max(1, int(banned + 0.999))} more seconds)")
        if not q.get("sign"):
            entry["outcome"] = "signature"
            return _envelope(40001, "缺少必选参数", "isv.signature-missing", "sign 不能为空")
        ts = q.get("timestamp", "")
        if not ts.isdigit():
            entry["outcome"] = "timestamp"
            return _envelope(40003, "非法的参数", "isv.timestamp-format-error", "timestamp 格式错误")
        if abs(int(ts) - self.clock()) > self.timestamp_tolerance:
            entry["outcome"] = "timestamp"
            return _envelope(40003, "非法的参数", "isv.timestamp-invalid", "timestamp 已过期")
        if q.get("v") != "2":
            entry["outcome"] = "version"
            return _envelope(40003, "非法的参数", "isv.parameter-format-invalid", "v 必须为 2")
        try:
            params = json.loads(req.body.decode("utf-8")) if req.body.strip() else {}
            if not isinstance(params, dict):
                raise ValueError
        except ValueError:
            entry["outcome"] = "body"
            return _envelope(40003, "非法的参数", "isv.parameter-format-invalid", "param_json 不是 JSON 对象")
        sign_method = q.get("sign_method") or "md5"
        try:
            expected = doudian_sign(self.app_key, self.app_secret, method, param_json(params), ts,
                                    sign_method=sign_method)
        except ValueError:
            expected = ""
        if q["sign"] != expected:
            entry["outcome"] = "signature"
            return _envelope(40003, "非法的参数", "isv.signature-invalid", "签名无效")
        token = q.get("access_token")
        if not token:
            entry["outcome"] = "auth"
            return _envelope(40001, "缺少必选参数", "isv.access-token-missing", "access_token 不能为空")
        owner = self.tokens.get(token)
        if owner is None:
            entry["outcome"] = "auth"
            return _envelope(40003, "非法的参数", "isv.access-token-no-existed", "access_token 不存在")
        if owner[1] < self.clock():
            entry["outcome"] = "auth"
            return _envelope(40003, "非法的参数", "isv.access-token-expired", "access_token 已过期")
        shop = owner[0]
        entry["shop"] = shop
        self._auto_advance()
        if method == "order.searchList":
            entry["page"] = params.get("page")
            return self._search(shop, params, entry)
        if method == "order.orderDetail":
            return self._detail(shop, params)
        entry["outcome"] = "permission"
        return _envelope(30001, "操作权限不足", "isv.app-permissions-insufficient", f"应用无 {method} 权限")

    def _search(self, shop: str, p: dict, entry: dict) -> Response:
        try:
            page, size = int(p.get("page", 0)), int(p.get("size", 10))
        except (TypeError, ValueError):
            return _envelope(40004, "非法的参数", "isv.parameter-invalid", "page/size 必须是整数")
        if not 1 <= size <= self.max_page_size or page < 0:
            return _envelope(40004, "非法的参数", "isv.parameter-invalid",
                             f"size 取值 1-{self.max_page_size}，page 从 0 开始")
        bounds = {}
        for key in ("update_time_start", "update_time_end", "create_time_start", "create_time_end"):
            if key in p and p[key] not in (None, ""):
                try:
                    bounds[key] = int(p[key])
                except (TypeError, ValueError):
                    return _envelope(40004, "非法的参数", "isv.parameter-invalid", f"{key} 必须是 unix 秒")
        for a, b in (("update_time_start", "update_time_end"), ("create_time_start", "create_time_end")):
            if a in bounds and b in bounds and bounds[b] - bounds[a] > self.max_window_days * 86400:
                return _envelope(40004, "非法的参数", "isv.parameter-invalid",
                                 f"{a}..{b} 跨度不能超过 {self.max_window_days:g} 天")
        order_by = "updated" if p.get("order_by") == "update_time" else "created"
        with self.lock:
            self.list_calls += 1
            n = self.list_calls
            if n > 1 and self.churn_per_list_call:
                self.advance(self.churn_per_list_call, shop)
                self.add_orders(shop, self.churn_per_list_call)
            if self.on_list_call is not None:
                self.on_list_call(self, shop, n)
            rows = [o for o in self.orders.values() if o["shop"] == shop
                    and bounds.get("update_time_start", -1) <= o["updated"] <= bounds.get("update_time_end", 1 << 62)
                    and bounds.get("create_time_start", -1) <= o["created"] <= bounds.get("create_time_end", 1 << 62)]
            rows.sort(key=lambda o: (o[order_by], o["id"]), reverse=not bool(p.get("order_asc")))
            chunk = rows[page * size:(page + 1) * size]
            result = [self._render(o, lines=len(o["lines"]) <= self.list_max_lines) for o in chunk]
        entry["returned"] = len(result)
        return _envelope(10000, "success", data={"page": page, "size": size, "total": len(rows),
                                                 "shop_order_list": result})

    def _detail(self, shop: str, p: dict) -> Response:
        oid = str(p.get("shop_order_id") or "")
        with self.lock:
            o = self.orders.get(oid)
            if o is None or o["shop"] != shop:
                return _envelope(50002, "业务处理失败", "isv.business-failed:order-not-exist", f"订单 {oid} 不存在")
            return _envelope(10000, "success", data={"shop_order_detail": self._render(o, lines=True)})


def make_app(**settings: Any) -> DouyinSandbox:
    """Build the sandbox. ``seed`` seeds the data, ``fault_seed`` the faults; fault settings (``error_rate``,
    ``timeout_rate``, …) go to :class:`Faults`, the rest to :class:`DouyinSandbox`."""
    return DouyinSandbox(faults=faults_from(settings), **settings)
