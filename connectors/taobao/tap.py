"""``tap-taobao``: Taobao/Tmall orders (trades with their lines) per shop, incremental on ``modified``.

A thin singer-sdk skin over :class:`~orderhub.connectors.taobao.client.TaobaoClient`. One partition and one
bookmark per shop. Each run reads ``taobao.trades.sold.increment.get`` windows (≤ 1 day, default 30 min as
TOP recommends, reference §1.3) from ``bookmark − overlap_seconds`` up to ``now − lag_seconds``, pages each
window backwards, and skips versions it already emitted (:class:`EdgeDedupe`), so overlapping reads emit
nothing twice. An expired session fails that shop with a message saying what to renew; the other shops go on
and the run fails at the end naming the failed shops.

The generic parts (:class:`ShopWindowStream`, :class:`ShopTap`) are shared with ``tap-jd``.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers._typing import TypeConformanceLevel

from orderhub.connectors.common.errors import (
    AuthError, ConfigError, ConnectorError, OrderhubError, PermissionDenied, TransientError,
)
from orderhub.connectors.common.secrets import register_secret
from orderhub.connectors.taobao.client import (
    HISTORY_LIMIT, MAX_PAGE_SIZE, MAX_WINDOW, SHANGHAI, SIGN_METHODS, TOP_GATEWAY, TaobaoClient, parse_top_time,
    top_time,
)
from orderhub.connectors.taobao.incremental import EdgeDedupe, ordered_prefetch, record_digest, time_windows

S, I, B, N = th.StringType, th.IntegerType, th.BooleanType, th.NumberType
# A shop that fails with one of these is parked (bookmark kept) while the other shops go on.
SHOP_ERRORS = (AuthError, PermissionDenied, TransientError)


def parse_start(value: Any) -> datetime:
    """``start_date`` as an aware datetime; a naive value is Asia/Shanghai time."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{value!r} is not an ISO date/time", key="start_date") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=SHANGHAI)


# ================================================================================================================
# generic: shops × modified-time windows (also used by tap-jd)
# ================================================================================================================
class ShopWindowStream(Stream):
    """Orders of every configured shop (one partition each), read in modified-time windows.

    Subclasses set ``id_field``, ``max_window``, ``default_window`` and implement :meth:`fetch_window`,
    ``format_time``/``parse_time`` (the platform's ``modified`` text). The bookmark of a shop is the end of the
    last window read completely (``replication_key_value``) plus ``edge_seen``, the versions emitted inside
    the overlap, so the next run re-reads the overlap without emitting anything twice.
    """

    replication_key = "modified"
    is_sorted = True          # windows are read in order and each is sorted: an interrupted run can resume
    check_sorted = False      # ...but the overlap re-reads rows just below the old bookmark on purpose
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY   # nested lines pass as the platform sent them
    id_field = "id"
    max_window = timedelta(days=1)
    default_window = timedelta(minutes=30)
    history_limit: timedelta | None = None

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return [{"_shop": shop_id} for shop_id in self._tap.shops]  # type: ignore[attr-defined]

    def fetch_window(self, shop: dict[str, Any], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        raise NotImplementedError

    def format_time(self, dt: datetime) -> str:
        return top_time(dt)

    def parse_time(self, text: str) -> datetime:
        return parse_top_time(text)

    def window_size(self) -> timedelta:
        raise NotImplementedError

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        tap: ShopTap = self._tap  # type: ignore[assignment]
        shop_id = context["_shop"]
        shop = tap.shops[shop_id]
        cfg = self.config
        state = self.get_context_state(context)
        overlap = timedelta(seconds=int(cfg.get("overlap_seconds", 300)))
        # Read up to the last *complete* second: rows modified in the current second could still enter the last
        # window while we page it, and the APIs only know whole seconds.
        now = datetime.fromtimestamp(math.floor(time.time() - float(cfg.get("lag_seconds", 5))) - 1, SHANGHAI)
        bookmark = state.get("replication_key_value")
        start = self.parse_time(bookmark) - overlap if bookmark else parse_start(cfg["start_date"])
        if self.history_limit is not None and start < now - self.history_limit + timedelta(hours=1):
            floor = now - self.history_limit + timedelta(hours=1)
            self.logger.warning("shop %s: the API only serves the last %d days; reading from %s instead of %s",
                                shop_id, self.history_limit.days, self.format_time(floor), self.format_time(start))
            start = floor
        windows = time_windows(start, now, self.window_size())
        tap.client  # build it here, once, before the window threads start  # noqa: B018
        dedupe = EdgeDedupe(state.get("edge_seen"))
        workers = int(cfg.get("parallel_windows", 4))
        emitted = 0
        try:
            for (_lo, hi), rows in ordered_prefetch(lambda w: self.fetch_window(shop, *w), windows, workers):
                for row in rows:
                    key = str(row[self.id_field])
                    if not dedupe.admit(key, str(row.get("modified", "")), record_digest(row)):
                        continue
                    row["_shop"] = shop_id
                    emitted += 1
                    yield row
                dedupe.prune(self.format_time(hi - overlap))
                state["edge_seen"] = dedupe.to_state()
        except SHOP_ERRORS as exc:
            tap.shop_failed(shop_id, exc)
            return
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = self.format_time(now)
        self.logger.info("shop %s: %d orders from %d windows up to %s", shop_id, emitted, len(windows),
                         self.format_time(now))


class ShopTap(Tap):
    """A marketplace tap over several shops of one app: secrets registered, per-shop failures collected."""

    message_writer_class = MsgSpecWriter
    system = "marketplace"
    token_key = "session"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        register_secret(self.config.get("app_secret"))
        self.shops: dict[str, dict[str, Any]] = {}
        for i, shop in enumerate(self.config.get("shops") or []):
            shop_id = str(shop.get("shop_id") or "")
            if not shop_id:
                raise ConfigError("is required", key=f"shops[{i}].shop_id")
            if shop_id in self.shops:
                raise ConfigError(f"shop {shop_id!r} is listed twice", key=f"shops[{i}].shop_id")
            register_secret(shop.get(self.token_key))
            self.shops[shop_id] = dict(shop)
        self.failed_shops: dict[str, OrderhubError] = {}
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The platform client, built once per tap (thread-safe: window threads use it)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> Any:
        raise NotImplementedError

    def shop_failed(self, shop_id: str, exc: OrderhubError) -> None:
        """Park one shop: log why (the message says what to renew), keep its bookmark, go on with the others."""
        self.failed_shops[shop_id] = exc
        self.logger.error("%s shop %s skipped, bookmark kept: %s", self.system, shop_id, exc)

    def sync_all(self) -> None:
        """Sync every shop; if some failed, raise after the others' records and state are out."""
        try:
            super().sync_all()
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self.failed_shops:
            first = next(iter(self.failed_shops.values()))
            detail = "; ".join(f"{shop}: {exc}" for shop, exc in self.failed_shops.items())
            cls = type(first) if isinstance(first, ConnectorError) else ConnectorError
            try:
                err = cls(f"{len(self.failed_shops)} of {len(self.shops)} {self.system} shops failed — {detail}",
                          system=self.system, shop=",".join(self.failed_shops))
            except TypeError:  # pragma: no cover - subclass with extra required args
                err = ConnectorError(detail, system=self.system)
            raise err


# ================================================================================================================
# Taobao
# ================================================================================================================
LINE = th.ObjectType(
    th.Property("oid", I), th.Property("oid_str", S), th.Property("status", S), th.Property("refund_status", S),
    th.Property("num_iid", I), th.Property("sku_id", S), th.Property("outer_iid", S), th.Property("outer_sku_id", S),
    th.Property("title", S), th.Property("sku_properties_name", S), th.Property("price", S), th.Property("num", I),
    th.Property("total_fee", S), th.Property("payment", S), th.Property("discount_fee", S),
    th.Property("adjust_fee", S), th.Property("divide_order_fee", S), th.Property("consign_time", S),
    th.Property("end_time", S), th.Property("logistics_company", S), th.Property("invoice_no", S),
    th.Property("store_code", S), th.Property("refund_id", S), th.Property("is_oversold", B),
)
TRADE_SCHEMA = th.PropertiesList(
    th.Property("tid_str", S, required=True, description="交易编号 (string form; tid exceeds 2^53)"),
    th.Property("tid", I, description="交易编号"),
    th.Property("_shop", S, required=True, description="shop_id from the config this trade was read for"),
    th.Property("status", S, description="交易状态 (reference §1.4)"), th.Property("type", S),
    th.Property("created", S, description="yyyy-MM-dd HH:mm:ss, Asia/Shanghai"),
    th.Property("modified", S, required=True, description="yyyy-MM-dd HH:mm:ss, Asia/Shanghai; the bookmark"),
    th.Property("pay_time", S), th.Property("consign_time", S), th.Property("end_time", S),
    th.Property("payment", S, description="实付金额, yuan"), th.Property("total_fee", S), th.Property("post_fee", S),
    th.Property("discount_fee", S), th.Property("adjust_fee", S), th.Property("received_payment", S),
    th.Property("buyer_nick", S), th.Property("buyer_open_uid", S), th.Property("seller_nick", S),
    th.Property("has_buyer_message", B), th.Property("buyer_message", S, description="买家留言 (via fullinfo)"),
    th.Property("seller_memo", S), th.Property("seller_flag", I),
    th.Property("receiver_name", S, description="desensitized by TOP"), th.Property("receiver_state", S),
    th.Property("receiver_city", S), th.Property("receiver_district", S), th.Property("receiver_town", S),
    th.Property("receiver_address", S, description="desensitized"), th.Property("receiver_zip", S),
    th.Property("receiver_mobile", S, description="desensitized"), th.Property("receiver_phone", S),
    th.Property("receiver_country", S), th.Property("oaid", S, description="OAID: receiver handle (§1.6)"),
    th.Property("shipping_type", S), th.Property("step_trade_status", S), th.Property("trade_from", S),
    th.Property("invoice_kind", S), th.Property("invoice_name", S),
    th.Property("orders", th.ObjectType(th.Property("order", th.ArrayType(LINE))), description="子订单 lines"),
).to_dict()


class TradesStream(ShopWindowStream):
    """``trades``: one record per Taobao trade, lines under ``orders.order`` (TOP's own shape)."""

    name = "trades"
    primary_keys = ("tid_str",)
    schema = TRADE_SCHEMA
    id_field = "tid_str"
    max_window = MAX_WINDOW
    history_limit = HISTORY_LIMIT

    def window_size(self) -> timedelta:
        minutes = int(self.config.get("window_minutes", 30))
        if not 1 <= minutes <= 1440:
            raise ConfigError("must be 1..1440 (TOP increment windows are at most one day)", key="window_minutes")
        return timedelta(minutes=minutes)

    def fetch_window(self, shop: dict[str, Any], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        tap: TapTaobao = self._tap  # type: ignore[assignment]
        rows = tap.client.fetch_window(shop["session"], lo, hi, page_size=int(self.config.get("page_size", 100)),
                                       shop=shop["shop_id"],
                                       fetch_buyer_message=bool(self.config.get("fetch_buyer_message", True)))
        for r in rows:
            r.setdefault("tid_str", str(r.get("tid")))
        return rows


class TapTaobao(ShopTap):
    """Singer tap for Taobao/Tmall shops over TOP (reference §1)."""

    name = "tap-taobao"
    system = "taobao"
    token_key = "session"
    config_jsonschema = th.PropertiesList(
        th.Property("api_url", S, default=TOP_GATEWAY, description="TOP gateway (…/router/rest) or a sandbox"),
        th.Property("app_key", S, required=True, description="TOP app key"),
        th.Property("app_secret", S, required=True, secret=True, description="TOP app secret"),
        th.Property("sign_method", S, default="md5", allowed_values=list(SIGN_METHODS)),
        th.Property("shops", th.ArrayType(th.ObjectType(
            th.Property("shop_id", S, required=True, description="your name for the shop; becomes _shop"),
            th.Property("session", S, required=True, secret=True, description="the shop's TOP session key"),
        )), required=True),
        th.Property("start_date", th.DateTimeType, required=True, description="first run reads from here"),
        th.Property("window_minutes", I, default=30, description="increment.get window, 1..1440"),
        th.Property("overlap_seconds", I, default=300, description="each run re-reads this much before the bookmark"),
        th.Property("lag_seconds", I, default=5, description="read up to now minus this"),
        th.Property("page_size", I, default=MAX_PAGE_SIZE, description="1..100"),
        th.Property("qps", N, default=10, description="calls per second for this app, all shops together"),
        th.Property("parallel_windows", I, default=4, description="windows fetched at the same time"),
        th.Property("max_ban_wait", N, default=300, description="longer platform bans park the shop"),
        th.Property("fetch_buyer_message", B, default=True, description="fullinfo call for trades with a message"),
        th.Property("timeout", N, default=30), th.Property("attempts", I, default=5),
    ).to_dict()

    def _new_client(self) -> TaobaoClient:
        c = self.config
        return TaobaoClient(
            c["app_key"], c["app_secret"], api_url=c.get("api_url") or TOP_GATEWAY,
            sign_method=c.get("sign_method") or "md5", qps=float(c.get("qps", 10)),
            timeout=float(c.get("timeout", 30)), attempts=int(c.get("attempts", 5)),
            max_ban_wait=float(c.get("max_ban_wait", 300)))

    def discover_streams(self) -> list[Stream]:
        return [TradesStream(self)]


if __name__ == "__main__":  # pragma: no cover
    TapTaobao.cli()
