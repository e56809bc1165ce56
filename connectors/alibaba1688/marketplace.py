"""Marketplace sync helpers shared by the 1688 and Douyin connectors.

* :func:`read_pages_backwards` — page through one time window so that no order is missed while the platform's
  result set shrinks under us (orders modified mid-sync leave the window; reference §6.2 "paginate backwards").
* :func:`ban_seconds_from` — read an announced ban length out of a platform error message.
* :class:`ShopWindowStream` / :class:`MarketplaceTap` — one singer partition and bookmark per shop, overlapping
  time windows with an edge set so overlaps never re-emit the same order version, and a per-shop failure that
  does not stop the other shops.

These are platform-neutral; they live here until the lead moves them to ``connectors/common``.
"""
from __future__ import annotations

import logging
import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers._typing import TypeConformanceLevel

from orderhub.connectors.common.errors import ConfigError, ConnectorError
from orderhub.connectors.common.incremental import EdgeDedupe, record_digest, time_windows
from orderhub.connectors.common.secrets import install_log_redaction, register_secret

CST = timezone(timedelta(hours=8))
log = logging.getLogger("orderhub.marketplace")

PageFetch = Callable[[int], "tuple[Sequence[dict], int]"]


def read_pages_backwards(fetch_page: PageFetch, *, first_page: int, page_size: int,
                         max_rounds: int = 3) -> list[dict]:
    """Read every item of one query whose result set may shrink (never grow) while we page.

    ``fetch_page(n)`` returns ``(items, total)``. We read the first page (to learn ``total``), then the pages
    from the last one down to the second, then the first page again. An item that stays in the result set can
    only move towards the front when others leave it, and we walk towards the front too, so we meet it on some
    page; items may be read twice (callers dedupe by id). If a later answer reports a *larger* total (the window
    grew, which a window ending in the past should not), the whole window is read again, at most ``max_rounds``
    times; if it still grows, :class:`WindowNotStable` (retryable) is raised rather than returning a window that
    may be incomplete. Returns all items read, duplicates included.
    """
    out: list[dict] = []
    for _ in range(max_rounds):
        items, total = fetch_page(first_page)
        out.extend(items)
        if total <= len(items) or total <= page_size:
            return out
        grew = False
        pages = math.ceil(total / page_size)
        for page in range(first_page + pages - 1, first_page, -1):
            items, seen_total = fetch_page(page)
            out.extend(items)
            grew = grew or seen_total > total
        items, seen_total = fetch_page(first_page)
        out.extend(items)
        if not (grew or seen_total > total):
            return out
        log.warning("result set grew from %d to %d while paging; reading the window again", total, seen_total)
    # never hand back a window that may be incomplete: its bookmark would move past orders we did not read
    from orderhub.connectors.common.incremental import WindowNotStable

    raise WindowNotStable(f"the window kept growing over {max_rounds} readings; it is read again on the next "
                          "attempt, its bookmark unchanged")


def latest_by_id(items: Iterable[dict], id_of: Callable[[dict], str],
                 version_of: Callable[[dict], Any]) -> dict[str, dict]:
    """Keep one item per id: the one with the highest version (modified time)."""
    out: dict[str, dict] = {}
    for item in items:
        key = id_of(item)
        old = out.get(key)
        if old is None or version_of(item) >= version_of(old):
            out[key] = item
    return out


_BAN = re.compile(r"(\d+(?:\.\d+)?)\s*(?:more\s+)?(?:seconds?|secs?|s\b|秒)", re.IGNORECASE)


def ban_seconds_from(*texts: str | None) -> float | None:
    """The ban length announced in an error text ("This ban will last for 3 more seconds", "3秒后重试")."""
    for text in texts:
        if text:
            m = _BAN.search(text)
            if m:
                return float(m.group(1))
    return None


def parse_datetime(value: str | datetime, *, key: str = "start_date") -> datetime:
    """ISO-8601 text → aware datetime (naive values are China time)."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{value!r} is not an ISO-8601 date-time", key=key) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=CST)


# ----------------------------------------------------------------------------------------------------------------
# singer-sdk parts
# ----------------------------------------------------------------------------------------------------------------
def shop_config_properties(*, window_minutes: int, page_size: int, max_page_size: int, qps: float,
                           api_url: str) -> list[th.Property]:
    """The settings every marketplace tap shares (README settings table)."""
    return [
        th.Property("api_url", th.StringType, default=api_url,
                    description="Gateway base URL (the sandbox URL in tests and the demo)"),
        th.Property("app_key", th.StringType, required=True, description="App key (应用 AppKey)"),
        th.Property("app_secret", th.StringType, required=True, secret=True,
                    description="App secret (应用密钥); use ${env:…} or a Prefect Secret block"),
        th.Property("shops", th.ArrayType(th.ObjectType(
            th.Property("shop_id", th.StringType, required=True, description="Shop / seller id (店铺)"),
            th.Property("access_token", th.StringType, required=True, secret=True,
                        description="The shop's OAuth access_token"),
        )), required=True, description="Shops to read; one partition and one bookmark each"),
        th.Property("start_date", th.DateTimeType, required=True,
                    description="First sync reads orders modified since this time"),
        th.Property("window_minutes", th.IntegerType, default=window_minutes,
                    description="Size of one modified-time window"),
        th.Property("lookback_seconds", th.NumberType, default=300,
                    description="Each run re-reads this much before the bookmark (windows overlap)"),
        th.Property("lag_seconds", th.NumberType, default=60,
                    description="A run reads up to now minus this (lets the platform's index settle)"),
        th.Property("page_size", th.IntegerType, default=page_size,
                    description=f"Orders per page (platform maximum {max_page_size})"),
        th.Property("qps", th.NumberType, default=qps, description="Client-side calls per second for this app"),
        th.Property("timeout_seconds", th.NumberType, default=30, description="HTTP timeout per call"),
        th.Property("max_attempts", th.IntegerType, default=5, description="Attempts per call (retries + 1)"),
        th.Property("max_ban_wait", th.NumberType, default=300,
                    description="Longest platform ban waited out; a longer one fails the shop at once"),
    ]


class MarketplaceTap(Tap):
    """A tap over one marketplace app and several shops. A shop whose sync fails (expired token, ban too long,
    platform down) is logged and skipped; the other shops are synced and their state written; then the run
    fails with one error that lists the failed shops (so schedulers see the failure)."""

    message_writer_class = MsgSpecWriter
    system = "marketplace"
    max_page_size = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        install_log_redaction()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call is noise in a sync log
        super().__init__(*args, **kwargs)
        register_secret(self.config.get("app_secret"))
        for shop in self.config.get("shops") or []:
            register_secret(shop.get("access_token"))
        self.shop_failures: dict[str, ConnectorError] = {}
        self._client: Any = None

    # config checks the JSON schema cannot express
    def validate_shops(self) -> None:
        ids = [s["shop_id"] for s in self.config.get("shops") or []]
        if len(ids) != len(set(ids)):
            raise ConfigError("shop_id values must be unique", key="shops")
        size = int(self.config.get("page_size") or self.max_page_size)
        if not 1 <= size <= self.max_page_size:
            raise ConfigError(f"must be between 1 and {self.max_page_size} (platform limit)", key="page_size")
        if int(self.config.get("window_minutes") or 1) < 1:
            raise ConfigError("must be >= 1", key="window_minutes")

    @property
    def client(self) -> Any:
        if self._client is None:
            self.validate_shops()
            self._client = self.make_client()
        return self._client

    def make_client(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def shop(self, shop_id: str) -> dict:
        for s in self.config["shops"]:
            if s["shop_id"] == shop_id:
                return s
        raise ConfigError(f"no shop {shop_id!r} in config", key="shops")

    def sync_all(self) -> None:
        self.shop_failures.clear()
        try:
            super().sync_all()
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self.shop_failures:
            lines = "; ".join(f"{shop}: {exc}" for shop, exc in self.shop_failures.items())
            total = len(self.config["shops"])
            raise ConnectorError(
                f"{self.system}: {len(self.shop_failures)} of {total} shops failed, the others were synced "
                f"and their bookmarks saved — {lines}",
                system=self.system, code="shops_failed",
                retryable=all(e.retryable for e in self.shop_failures.values()),
                details={shop: exc.code for shop, exc in self.shop_failures.items()})


class ShopWindowStream(Stream):
    """Orders of every configured shop, incremental over modified-time windows.

    Per shop (partition ``{"_shop": id}``) the state holds ``replication_key_value`` — the end of the last
    window read completely — and ``edge``: ``{order id: [version, content digest]}`` for orders whose version
    lies within ``lookback_seconds`` of it. A run starts ``lookback_seconds`` before the bookmark (overlap, so
    late index updates at the edge are not lost) and skips an order when it already emitted that version with
    the same content, or a newer one (so the overlap emits no duplicates, and a second change within the same
    second is still emitted). Windows end ``lag_seconds`` before now, so orders created or changed during the sync
    have later versions than this run's last window and land in the next run. A window's records are emitted
    only after the whole window was read, and its state right after them.
    """

    name = "orders"
    is_sorted = False
    check_sorted = False
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY
    id_field = "order_id"

    # --- platform hooks -------------------------------------------------------------------------------------------
    def fetch_window(self, shop: dict, start: datetime, end: datetime) -> list[dict]:  # pragma: no cover
        """All orders of ``shop`` modified in ``[start, end]``, one record per order, lines filled in."""
        raise NotImplementedError

    def to_bookmark(self, dt: datetime) -> Any:  # pragma: no cover
        raise NotImplementedError

    def from_bookmark(self, value: Any) -> datetime:  # pragma: no cover
        raise NotImplementedError

    # --- singer-sdk -----------------------------------------------------------------------------------------------
    @property
    def partitions(self) -> list[dict]:
        return [{"_shop": s["shop_id"]} for s in self.config["shops"]]

    def _increment_stream_state(self, latest_record: dict, *, context: dict | None = None) -> None:
        """Bookmarks move per completed window (see :meth:`get_records`), never per record."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time(), CST)

    def _flush_state(self) -> None:
        self.state_manager.is_flushed = False
        self._write_state_message()

    def get_records(self, context: dict | None) -> Iterator[dict]:
        assert context is not None
        tap: MarketplaceTap = self._tap  # type: ignore[assignment]
        shop_id = context["_shop"]
        shop = tap.shop(shop_id)
        cfg = self.config
        lookback = timedelta(seconds=float(cfg.get("lookback_seconds", 300)))
        size = timedelta(minutes=int(cfg.get("window_minutes", 60)))
        end = self.now() - timedelta(seconds=float(cfg.get("lag_seconds", 60)))

        state = self.get_context_state(context)
        saved = state.get("replication_key_value")
        bookmark = self.from_bookmark(saved) if saved is not None else None
        start = bookmark - lookback if bookmark else parse_datetime(cfg["start_date"])
        dedupe = EdgeDedupe({k: v if isinstance(v, list) else [v, ""] for k, v in (state.get("edge") or {}).items()})
        if start >= end:
            return
        emitted = windows = 0
        try:
            for ws, we in time_windows(start, end, size):
                windows += 1
                records = self.fetch_window(shop, ws, we)
                records.sort(key=lambda r: self._version(r))
                for rec in records:
                    if not dedupe.admit(str(rec[self.id_field]), self._version(rec), record_digest(rec)):
                        continue  # emitted before (overlap, shared window boundary) or outdated
                    emitted += 1
                    yield rec
                bookmark = max(bookmark, we) if bookmark else we
                dedupe.prune(self.to_bookmark(bookmark - lookback))
                state["replication_key"] = self.replication_key
                state["replication_key_value"] = self.to_bookmark(bookmark)
                state["edge"] = dedupe.to_state()
                self._flush_state()
            self.logger.info("%s shop %s: %d orders from %d windows %s … %s", tap.system, shop_id, emitted,
                             windows, start.astimezone(CST).isoformat(timespec="seconds"),
                             end.isoformat(timespec="seconds"))
        except ConnectorError as exc:
            exc.shop = exc.shop or shop_id
            tap.shop_failures[shop_id] = exc
            self.logger.error("%s shop %s failed, other shops go on: %s", tap.system, shop_id, exc)

    def _version(self, rec: dict) -> Any:
        return rec[self.replication_key]
