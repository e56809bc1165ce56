"""``tap-douyin``: shop orders of one or more Douyin (抖店) shops, one record per order with its sku orders nested.

A thin singer-sdk skin over :class:`~orderhub.connectors.douyin.client.DouyinClient`; windows, bookmarks and
per-shop failure handling come from :mod:`orderhub.connectors.alibaba1688.marketplace`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from singer_sdk import typing as th

from orderhub.connectors.alibaba1688.marketplace import MarketplaceTap, ShopWindowStream, shop_config_properties
from orderhub.connectors.douyin.client import GATEWAY, MAX_PAGE_SIZE, SIGN_METHODS, DouyinClient

Obj, Arr, P = th.ObjectType, th.ArrayType, th.Property
S, I = th.StringType, th.IntegerType
_REGION = Obj(P("name", S), P("id", S))
_ADDR = Obj(P("province", _REGION), P("city", _REGION), P("town", _REGION), P("street", _REGION), P("detail", S),
            P("encrypt_detail", S))

#: shop_order (reference §4.3): amounts are integer fen, times unix seconds. Listed fields are typed; other
#: platform fields inside nested objects pass through untouched.
SHOP_ORDER_SCHEMA = th.PropertiesList(
    P("_shop", S, required=True, description="Shop the order was read from (店铺 id)"),
    P("order_id", S, required=True, description="Shop order id (店铺单号)"),
    P("order_status", I, description="1 待支付 105 已支付 2 备货中 101 部分发货 3 已发货 4 已取消 5 已完成"),
    P("order_status_desc", S), P("main_status", I), P("main_status_desc", S),
    P("create_time", I), P("update_time", I, required=True, description="unix seconds (更新时间); bookmark"),
    P("pay_time", I), P("ship_time", I), P("finish_time", I), P("exp_ship_time", I),
    P("order_amount", I, description="fen"), P("pay_amount", I, description="fen"), P("post_amount", I),
    P("promotion_amount", I), P("promotion_shop_amount", I), P("promotion_platform_amount", I),
    P("promotion_talent_amount", I), P("promotion_pay_amount", I), P("modify_amount", I), P("tax_amount", I),
    P("pay_type", I), P("order_type", I), P("b_type", I), P("biz", I), P("trade_type", I),
    P("buyer_words", S, description="买家留言"), P("seller_words", S, description="商家备注"),
    P("seller_remark_stars", I), P("shop_id", I), P("doudian_open_id", S), P("user_id_info", Obj()),
    P("post_receiver", S), P("encrypt_post_receiver", S, description="ciphertext (privacy handle)"),
    P("mask_post_receiver", S), P("post_tel", S), P("encrypt_post_tel", S, description="ciphertext (privacy handle)"),
    P("mask_post_tel", S), P("post_addr", _ADDR), P("mask_post_addr", _ADDR),
    P("logistics_info", Arr(Obj(P("tracking_no", S), P("company", S), P("company_name", S), P("ship_time", I)))),
    P("sku_order_list", Arr(Obj(
        P("order_id", S), P("parent_order_id", S), P("order_status", I), P("main_status", I),
        P("product_id", I), P("product_id_str", S), P("sku_id", I), P("out_sku_id", S), P("out_product_id", S),
        P("code", S, description="商家编码"), P("product_name", S), P("spec", Arr(Obj(P("name", S), P("value", S)))),
        P("item_num", I), P("origin_amount", I), P("sum_amount", I), P("order_amount", I), P("pay_amount", I),
        P("post_amount", I), P("promotion_amount", I), P("given_product_type", S, description="MASTER / FREE"),
        P("after_sale_info", Obj(P("after_sale_status", I), P("after_sale_type", I), P("refund_status", I))),
        P("create_time", I), P("update_time", I),
    ))),
).to_dict()


class OrdersStream(ShopWindowStream):
    """``/order/searchList`` by ``update_time``, lines from ``/order/orderDetail`` when the list leaves them out.
    Primary key (``_shop``, ``order_id``); bookmark ``update_time`` (unix seconds) per shop."""

    name = "orders"
    primary_keys = ("_shop", "order_id")
    replication_key = "update_time"
    id_field = "order_id"
    schema = SHOP_ORDER_SCHEMA

    def to_bookmark(self, dt: datetime) -> int:
        return int(dt.timestamp())

    def from_bookmark(self, value: int | str) -> datetime:
        return datetime.fromtimestamp(int(value), timezone.utc)

    def fetch_window(self, shop: dict, start: datetime, end: datetime) -> list[dict]:
        client: DouyinClient = self._tap.client  # type: ignore[attr-defined]
        orders = client.orders_updated_between(shop["access_token"], start, end, shop=shop["shop_id"],
                                               page_size=int(self.config.get("page_size", MAX_PAGE_SIZE)))
        out = []
        for order in orders:
            rec = dict(order)
            rec["_shop"] = shop["shop_id"]
            rec["order_id"] = str(rec["order_id"])
            if not isinstance(rec.get("update_time"), int):
                self.logger.warning("douyin shop %s order %s: update_time %r unreadable, using window end",
                                    shop["shop_id"], rec["order_id"], rec.get("update_time"))
                rec["update_time"] = self.to_bookmark(end)
            out.append(rec)
        return out


class TapDouyin(MarketplaceTap):
    """Singer tap for Douyin shop (抖店开放平台) orders."""

    name = "tap-douyin"
    system = "douyin"
    max_page_size = MAX_PAGE_SIZE
    config_jsonschema = th.PropertiesList(
        *shop_config_properties(window_minutes=1440, page_size=MAX_PAGE_SIZE, max_page_size=MAX_PAGE_SIZE,
                                qps=10, api_url=GATEWAY),
        th.Property("sign_method", th.StringType, default="hmac-sha256", allowed_values=list(SIGN_METHODS),
                    description="hmac-sha256 (official Go SDK) or md5 (Java/Python SDKs)"),
        th.Property("rate_limit_wait", th.NumberType, default=1,
                    description="Seconds to wait on code 60000 when the platform does not say how long"),
    ).to_dict()

    def make_client(self) -> DouyinClient:
        c = self.config
        return DouyinClient(
            c["app_key"], c["app_secret"], base_url=c.get("api_url", GATEWAY),
            sign_method=c.get("sign_method", "hmac-sha256"), qps=float(c.get("qps", 10)),
            timeout=float(c.get("timeout_seconds", 30)), max_attempts=int(c.get("max_attempts", 5)),
            max_ban_wait=float(c.get("max_ban_wait", 300)), default_ban_seconds=float(c.get("rate_limit_wait", 1)))

    def discover_streams(self) -> list[OrdersStream]:
        return [OrdersStream(self)]


if __name__ == "__main__":  # pragma: no cover
    TapDouyin.cli()
