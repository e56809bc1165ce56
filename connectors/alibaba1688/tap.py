"""``tap-alibaba1688``: seller orders of one or more 1688 shops, one record per order with its lines nested.

A thin singer-sdk skin over :class:`~orderhub.connectors.alibaba1688.client.Alibaba1688Client`; windows,
bookmarks and per-shop failure handling come from :mod:`orderhub.connectors.alibaba1688.marketplace`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from singer_sdk import typing as th

from orderhub.connectors.alibaba1688.client import (
    GATEWAY,
    MAX_PAGE_SIZE,
    Alibaba1688Client,
    order_id_of,
    parse_aop_time,
)
from orderhub.connectors.alibaba1688.marketplace import CST, MarketplaceTap, ShopWindowStream, shop_config_properties
from orderhub.connectors.common.errors import RecordError

Obj, Arr, P = th.ObjectType, th.ArrayType, th.Property
S, N, I, B = th.StringType, th.NumberType, th.IntegerType, th.BooleanType

#: TradeInfo (reference §3.3). Listed fields are typed; other platform fields pass through untouched.
TRADE_SCHEMA = th.PropertiesList(
    P("_shop", S, required=True, description="Shop (seller) the order was read from (店铺)"),
    P("_order_id", S, required=True, description="baseInfo.idOfStr — the order id as text (订单号)"),
    P("_modified_at", th.DateTimeType, required=True, description="baseInfo.modifyTime as ISO-8601 (修改时间)"),
    P("baseInfo", Obj(
        P("id", I), P("idOfStr", S), P("status", S, description="订单状态"), P("createTime", S),
        P("modifyTime", S), P("payTime", S), P("allDeliveredTime", S), P("completeTime", S),
        P("totalAmount", N, description="应付款总金额 (yuan)"), P("sumProductPayment", N), P("shippingFee", N),
        P("discount", I, description="折扣 (fen)"), P("refund", N), P("refundStatus", S), P("currency", S),
        P("tradeType", S), P("businessType", S), P("buyerID", S), P("buyerLoginId", S), P("buyerOpenUid", S),
        P("sellerID", S), P("sellerLoginId", S), P("buyerFeedback", S, description="买家留言"),
        P("remark", S), P("sellerMemo", S, description="卖家备忘"), P("closeReason", S),
        P("receiverInfo", Obj(P("toFullName", S), P("toMobile", S), P("toPhone", S), P("toPost", S),
                              P("toDivisionCode", S), P("toTownCode", S), P("toArea", S)),
          description="收货人 (masked by the platform)"),
        P("buyerContact", Obj()), P("ccid", S, description="contact decrypt id"),
    )),
    P("productItems", Arr(Obj(
        P("subItemID", I), P("subItemIDString", S), P("productID", I), P("skuID", I), P("specId", S),
        P("name", S), P("cargoNumber", S, description="货号 (seller SKU)"), P("productCargoNumber", S),
        P("price", N), P("quantity", N), P("unit", S), P("itemAmount", N), P("entryDiscount", N),
        P("status", S), P("statusStr", S), P("refundStatus", S), P("logisticsStatus", I),
        P("gmtCreate", S), P("gmtModified", S),
    ))),
    P("nativeLogistics", Obj(
        P("address", S), P("area", S), P("areaCode", S), P("city", S), P("province", S), P("town", S),
        P("contactPerson", S), P("mobile", S), P("telephone", S), P("zip", S),
        P("caid", S, description="address decrypt id (privacy handle)"), P("logisticsItems", Arr(Obj())),
    )),
    P("tradeTerms", Arr(Obj())), P("orderBizInfo", Obj()), P("orderInvoiceInfo", Obj()),
    P("guaranteesTerms", Obj()), P("orderRateInfo", Obj()), P("overseasExtraAddress", Obj()),
    P("customs", Obj()), P("extAttributes", Arr(Obj())), P("fromEncryptOrder", B),
    P("encryptOutOrderInfo", Obj()), P("sendGoodsOverdueRisk", Obj()), P("officialLogisticOrder", Obj()),
).to_dict()


class OrdersStream(ShopWindowStream):
    """``alibaba.trade.getSellerOrderList`` by modified time, lines from ``alibaba.trade.get.sellerView`` when the
    list leaves them out. Primary key (``_shop``, ``_order_id``); bookmark ``_modified_at`` per shop."""

    name = "orders"
    primary_keys = ("_shop", "_order_id")
    replication_key = "_modified_at"
    id_field = "_order_id"
    schema = TRADE_SCHEMA

    def to_bookmark(self, dt: datetime) -> str:
        return dt.astimezone(CST).isoformat(timespec="milliseconds")

    def from_bookmark(self, value: str) -> datetime:
        dt = datetime.fromisoformat(str(value))
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)

    def fetch_window(self, shop: dict, start: datetime, end: datetime) -> list[dict]:
        client: Alibaba1688Client = self._tap.client  # type: ignore[attr-defined]
        orders = client.orders_modified_between(shop["access_token"], start, end, shop=shop["shop_id"],
                                                page_size=int(self.config.get("page_size", MAX_PAGE_SIZE)))
        out = []
        for trade in orders:
            try:
                out.append(self.to_record(trade, shop["shop_id"], end))
            except RecordError as exc:  # cannot happen for listed ids (filtered by the client); kept for safety
                self.logger.error("1688 shop %s: %s", shop["shop_id"], exc)
        return out

    def to_record(self, trade: dict, shop_id: str, window_end: datetime) -> dict:
        """The platform's TradeInfo plus ``_shop``, ``_order_id`` and ``_modified_at``."""
        oid = order_id_of(trade)
        if not oid:
            raise RecordError("order without id", field="baseInfo.idOfStr", code="missing_id")
        base = trade.get("baseInfo") or {}
        try:
            modified = parse_aop_time(base["modifyTime"])
        except (KeyError, ValueError, TypeError):
            self.logger.warning("1688 shop %s order %s: baseInfo.modifyTime %r unreadable, using window end",
                                shop_id, oid, base.get("modifyTime"))
            modified = window_end
        rec = dict(trade)
        rec["_shop"], rec["_order_id"], rec["_modified_at"] = shop_id, oid, self.to_bookmark(modified)
        return rec


class TapAlibaba1688(MarketplaceTap):
    """Singer tap for 1688 (阿里巴巴 1688 开放平台) seller orders."""

    name = "tap-alibaba1688"
    system = "alibaba1688"
    max_page_size = MAX_PAGE_SIZE
    config_jsonschema = th.PropertiesList(
        *shop_config_properties(window_minutes=1440, page_size=MAX_PAGE_SIZE, max_page_size=MAX_PAGE_SIZE,
                                qps=10, api_url=GATEWAY),
        th.Property("rate_limit_wait", th.NumberType, default=10,
                    description="Seconds to wait on gw.Qos* when the gateway does not say how long"),
    ).to_dict()

    def make_client(self) -> Alibaba1688Client:
        c = self.config
        return Alibaba1688Client(
            c["app_key"], c["app_secret"], base_url=c.get("api_url", GATEWAY), qps=float(c.get("qps", 10)),
            timeout=float(c.get("timeout_seconds", 30)), max_attempts=int(c.get("max_attempts", 5)),
            max_ban_wait=float(c.get("max_ban_wait", 300)), default_ban_seconds=float(c.get("rate_limit_wait", 10)))

    def discover_streams(self) -> list[OrdersStream]:
        return [OrdersStream(self)]


if __name__ == "__main__":  # pragma: no cover
    TapAlibaba1688.cli()
