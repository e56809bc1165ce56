"""``tap-jd``: JD POP orders (with their items) per shop, incremental on ``modified``.

A thin singer-sdk skin over :class:`~orderhub.connectors.jd.client.JDClient`, built on the same shop × window
machinery as ``tap-taobao`` (:class:`ShopWindowStream`): ``jingdong.pop.order.search`` (or ``enSearch`` for the
``encrypt_*`` consignee ciphertexts) by modification time, windows ≤ 1 month (reference §2.3), newest first and
paged backwards, overlap + dedupe between runs, per-shop bookmarks, an expired token parks only its shop.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from singer_sdk import Stream
from singer_sdk import typing as th

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.jd.client import (
    JOS_GATEWAY, MAX_PAGE_SIZE, ORDER_APIS, SEARCH, JDClient, jd_time, parse_jd_time,
)
from orderhub.connectors.taobao.tap import ShopTap, ShopWindowStream

S, I, B, N = th.StringType, th.IntegerType, th.BooleanType, th.NumberType

CONSIGNEE = th.ObjectType(
    th.Property("fullname", S, description="desensitized"), th.Property("mobile", S, description="desensitized"),
    th.Property("telephone", S), th.Property("fullAddress", S, description="desensitized"),
    th.Property("province", S), th.Property("city", S), th.Property("county", S), th.Property("town", S),
    th.Property("provinceId", S), th.Property("cityId", S), th.Property("countyId", S), th.Property("townId", S),
    th.Property("encrypt_fullname", S, description="JD TDE ciphertext (enSearch)"),
    th.Property("encrypt_mobile", S), th.Property("encrypt_telephone", S), th.Property("encrypt_fullAddress", S),
)
ITEM = th.ObjectType(
    th.Property("skuId", S), th.Property("outerSkuId", S), th.Property("skuName", S), th.Property("jdPrice", S),
    th.Property("itemTotal", S, description="quantity"), th.Property("wareId", S), th.Property("productNo", S),
    th.Property("giftPoint", S), th.Property("newStoreId", S), th.Property("serviceName", S),
)
COUPON = th.ObjectType(th.Property("orderId", S), th.Property("skuId", S), th.Property("couponType", S),
                       th.Property("couponPrice", S))
ORDER_SCHEMA = th.PropertiesList(
    th.Property("orderId", S, required=True, description="订单号"),
    th.Property("_shop", S, required=True, description="shop_id from the config this order was read for"),
    th.Property("venderId", S), th.Property("orderType", S), th.Property("payType", S),
    th.Property("orderTotalPrice", S, description="总金额, yuan"), th.Property("orderSellerPrice", S),
    th.Property("orderPayment", S, description="用户应付金额"), th.Property("freightPrice", S),
    th.Property("sellerDiscount", S), th.Property("balanceUsed", S), th.Property("taxFee", S),
    th.Property("orderState", S, description="订单状态 (reference §2.4)"), th.Property("orderStateRemark", S),
    th.Property("deliveryType", S), th.Property("invoiceInfo", S), th.Property("invoiceCode", S),
    th.Property("orderRemark", S, description="买家备注"), th.Property("venderRemark", S, description="商家备注"),
    th.Property("orderStartTime", S), th.Property("orderEndTime", S), th.Property("paymentConfirmTime", S),
    th.Property("modified", S, required=True, description="yyyy-MM-dd HH:mm:ss, Asia/Shanghai; the bookmark"),
    th.Property("pin", S), th.Property("open_id_buyer", S), th.Property("returnOrder", S),
    th.Property("waybill", S), th.Property("logisticsId", S), th.Property("parentOrderId", S),
    th.Property("orderSource", S), th.Property("storeOrder", S), th.Property("idSopShipmenttype", S),
    th.Property("storeId", S),
    th.Property("consigneeInfo", CONSIGNEE), th.Property("itemInfoList", th.ArrayType(ITEM)),
    th.Property("couponDetailList", th.ArrayType(COUPON)),
).to_dict()


class OrdersStream(ShopWindowStream):
    """``orders``: one record per JD POP order, items under ``itemInfoList`` (JOS's own shape)."""

    name = "orders"
    primary_keys = ("orderId",)
    schema = ORDER_SCHEMA
    id_field = "orderId"
    max_window = timedelta(days=28)

    def format_time(self, dt: datetime) -> str:
        return jd_time(dt)

    def parse_time(self, text: str) -> datetime:
        return parse_jd_time(text)

    def window_size(self) -> timedelta:
        days = float(self.config.get("window_days", 1))
        if not 0 < days <= 28:
            raise ConfigError("must be > 0 and ≤ 28 (JOS windows are at most one month, and February has 28 days)",
                              key="window_days")
        return timedelta(days=days)

    def fetch_window(self, shop: dict[str, Any], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        tap: TapJD = self._tap  # type: ignore[assignment]
        return tap.client.fetch_window(shop["access_token"], lo, hi,
                                       page_size=int(self.config.get("page_size", MAX_PAGE_SIZE)),
                                       method=self.config.get("order_api") or SEARCH, shop=shop["shop_id"])


class TapJD(ShopTap):
    """Singer tap for JD POP shops over JOS routerjson (reference §2)."""

    name = "tap-jd"
    system = "jd"
    token_key = "access_token"
    config_jsonschema = th.PropertiesList(
        th.Property("api_url", S, default=JOS_GATEWAY, description="JOS gateway (…/routerjson) or a sandbox"),
        th.Property("app_key", S, required=True, description="JOS app key"),
        th.Property("app_secret", S, required=True, secret=True, description="JOS app secret"),
        th.Property("shops", th.ArrayType(th.ObjectType(
            th.Property("shop_id", S, required=True, description="your name for the shop; becomes _shop"),
            th.Property("access_token", S, required=True, secret=True, description="the shop's JOS access token"),
        )), required=True),
        th.Property("start_date", th.DateTimeType, required=True, description="first run reads from here"),
        th.Property("order_api", S, default=SEARCH, allowed_values=list(ORDER_APIS),
                    description="enSearch adds encrypt_* consignee ciphertexts"),
        th.Property("window_days", N, default=1, description="window size in days, ≤ 28"),
        th.Property("overlap_seconds", I, default=300, description="each run re-reads this much before the bookmark"),
        th.Property("lag_seconds", I, default=5, description="read up to now minus this"),
        th.Property("page_size", I, default=MAX_PAGE_SIZE, description="1..100"),
        th.Property("qps", N, default=10, description="calls per second for this app, all shops together"),
        th.Property("parallel_windows", I, default=2, description="windows fetched at the same time"),
        th.Property("rate_limit_cooldown", N, default=60,
                    description="JOS does not say how long 'App Call Limited' lasts: wait this long"),
        th.Property("max_ban_wait", N, default=300, description="longer bans park the shop"),
        th.Property("timeout", N, default=30), th.Property("attempts", I, default=5),
    ).to_dict()

    def _new_client(self) -> JDClient:
        c = self.config
        return JDClient(
            c["app_key"], c["app_secret"], api_url=c.get("api_url") or JOS_GATEWAY, qps=float(c.get("qps", 10)),
            timeout=float(c.get("timeout", 30)), attempts=int(c.get("attempts", 5)),
            max_ban_wait=float(c.get("max_ban_wait", 300)),
            rate_limit_cooldown=float(c.get("rate_limit_cooldown", 60)))

    def discover_streams(self) -> list[Stream]:
        return [OrdersStream(self)]


if __name__ == "__main__":  # pragma: no cover
    TapJD.cli()
