"""``tap-erp-sql``: sales orders (header + nested lines) from an ERP database, as Singer stream ``erp_orders``.

A thin singer-sdk skin over :class:`~orderhub.connectors.erp_sql.reader.OrderReader`: the reader does the
querying, paging, bookmarks and type handling; this module declares the settings and the schema, and keeps one
bookmark per partition (company book / schema / shard) in the SDK's partition state. Records are written with
``MsgSpecWriter`` and no type conformance (the driver already gives exact Decimals and aware datetimes), the two
largest per-record costs of a stock SDK tap (reference singer.md §3).

Records the reader quarantines (MySQL zero dates, unreadable values) go to a second stream,
``erp_orders_rejects`` (record id, reason code, field, raw record), so nothing is dropped silently.
"""
from __future__ import annotations

import json
import typing as t

import click
import sqlalchemy as sa
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers._typing import TypeConformanceLevel

from orderhub.connectors.common.errors import ConfigError, OrderhubError, RecordError
from orderhub.connectors.common.privacy import mask_text
from orderhub.connectors.erp_sql.reader import READER_KEYS, OrderReader, ReaderSettings

ORDERS = "erp_orders"
REJECTS = "erp_orders_rejects"
MAX_REJECTS_KEPT = 10_000


def json_type(sa_type: t.Any) -> dict:
    """JSON Schema for a column type (nullable): integers, exact numbers, ISO date-times, booleans, text."""
    if isinstance(sa_type, sa.Boolean):
        return {"type": ["boolean", "null"]}
    if isinstance(sa_type, sa.Integer):
        return {"type": ["integer", "null"]}
    if isinstance(sa_type, (sa.Numeric, sa.Float)):
        return {"type": ["number", "null"]}
    if isinstance(sa_type, sa.DateTime):
        return {"type": ["string", "null"], "format": "date-time"}
    if isinstance(sa_type, sa.Date):
        return {"type": ["string", "null"], "format": "date"}
    return {"type": ["string", "null"]}


class ErpOrdersStream(Stream):
    """One record per order: the header row, its line rows under ``lines``, ``_shop`` = the partition."""

    name = ORDERS
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    is_sorted = True
    check_sorted = False

    def __init__(self, tap: "TapErpSql", reader: OrderReader) -> None:
        self.reader = reader
        s = reader.settings
        htypes, ltypes = reader.column_types()
        props = {c: json_type(tp) for c, tp in htypes.items()}
        props[s.lines_field] = {"type": ["array", "null"], "items": {
            "type": "object", "properties": {c: json_type(tp) for c, tp in ltypes.items()}}}
        props["_shop"] = {"type": "string", "description": "partition: company book / schema / shard (账套)"}
        schema = {"type": "object", "properties": props}
        super().__init__(tap, schema=schema, name=ORDERS)
        self.primary_keys = ["_shop", s.primary_key]
        self.replication_key = s.updated_at[0] if s.updated_at else None
        self._tap_ref = tap

    @property
    def partitions(self) -> list[dict] | None:
        return [{"_shop": name} for name in self.reader.partition_names]

    def get_replication_key_signpost(self, context: t.Any = None) -> None:
        return None  # the keyset bookmark is exact; no signpost cap

    def _increment_stream_state(self, latest_record: dict, *, context: t.Any = None) -> None:
        return None  # the reader hands out the bookmark after each complete batch (see get_records)

    def get_records(self, context: dict | None) -> t.Iterable[dict]:
        name = (context or {}).get("_shop") or self.reader.partition_names[0]
        state = self.get_context_state(context)
        for batch, pstate in self.reader.iter_partition(name, state.get("keyset")):
            yield from batch
            for err in batch.errors:
                self._tap_ref.add_reject(err, name)
            # Every record of the batch has been written by now: advance the partition's bookmark.
            state["keyset"] = pstate
            if self.replication_key and pstate.get("updated_at"):
                state["replication_key"] = self.replication_key
                state["replication_key_value"] = pstate["updated_at"]
            self.state_manager.is_flushed = False
            self._write_state_message()


class ErpOrderRejectsStream(Stream):
    """Quarantined source records: why (reason code, field) and the raw record as JSON text."""

    name = REJECTS
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    primary_keys = ["record_id"]
    schema = th.PropertiesList(
        th.Property("record_id", th.StringType, required=True, description="partition/primary key"),
        th.Property("_shop", th.StringType),
        th.Property("code", th.StringType, description="reason code, e.g. zero_date"),
        th.Property("field", th.StringType),
        th.Property("message", th.StringType),
        th.Property("record", th.StringType, description="the raw record as JSON"),
    ).to_dict()

    def get_records(self, context: dict | None) -> t.Iterable[dict]:
        yield from self._tap.rejects  # type: ignore[attr-defined]


class TapErpSql(Tap):
    """Singer tap for sales orders in MySQL/MariaDB, SQL Server, Oracle or PostgreSQL ERP databases."""

    name = "tap-erp-sql"
    message_writer_class = MsgSpecWriter
    config_jsonschema = th.PropertiesList(
        th.Property("url", th.StringType, secret=True, description=READER_KEYS["url"]),
        th.Property("url_env", th.StringType, description=READER_KEYS["url_env"]),
        th.Property("header_table", th.StringType, description=READER_KEYS["header_table"]),
        th.Property("line_table", th.StringType, description=READER_KEYS["line_table"]),
        th.Property("header_query", th.StringType, description=READER_KEYS["header_query"]),
        th.Property("line_query", th.StringType, description=READER_KEYS["line_query"]),
        th.Property("header_columns", th.ArrayType(th.StringType), description=READER_KEYS["header_columns"]),
        th.Property("line_columns", th.ArrayType(th.StringType), description=READER_KEYS["line_columns"]),
        th.Property("primary_key", th.StringType, description=READER_KEYS["primary_key"]),
        th.Property("line_primary_key", th.StringType, description=READER_KEYS["line_primary_key"]),
        th.Property("join_key", th.StringType, description=READER_KEYS["join_key"]),
        th.Property("header_key", th.StringType, description=READER_KEYS["header_key"]),
        th.Property("updated_at", th.CustomType({"type": ["string", "array"]}),
                    description=READER_KEYS["updated_at"]),
        th.Property("line_updated_at", th.CustomType({"type": ["string", "array"]}),
                    description=READER_KEYS["line_updated_at"]),
        th.Property("timezone", th.StringType, description=READER_KEYS["timezone"]),
        th.Property("batch_size", th.IntegerType, description=READER_KEYS["batch_size"]),
        th.Property("lookback_seconds", th.NumberType, description=READER_KEYS["lookback_seconds"]),
        th.Property("mode", th.StringType, allowed_values=["incremental", "full"], description=READER_KEYS["mode"]),
        th.Property("start", th.StringType, description=READER_KEYS["start"]),
        th.Property("partitions", th.ArrayType(th.ObjectType(additional_properties=True)),
                    description=READER_KEYS["partitions"]),
        th.Property("shop", th.StringType, description=READER_KEYS["shop"]),
        th.Property("lines_field", th.StringType, description=READER_KEYS["lines_field"]),
        th.Property("filter", th.ObjectType(additional_properties=True), description=READER_KEYS["filter"]),
        th.Property("line_filter", th.ObjectType(additional_properties=True), description=READER_KEYS["line_filter"]),
        th.Property("connect_timeout", th.IntegerType, description=READER_KEYS["connect_timeout"]),
        th.Property("connect_retries", th.IntegerType, description=READER_KEYS["connect_retries"]),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._reader: OrderReader | None = None
        self.rejects: list[dict] = []
        super().__init__(*args, **kwargs)

    @property
    def reader(self) -> OrderReader:
        if self._reader is None:
            builtin = set(self.config_jsonschema.get("properties", {})) - set(READER_KEYS)
            cfg = {k: v for k, v in self.config.items() if k not in builtin}
            self._reader = OrderReader(ReaderSettings.from_config(cfg))
        return self._reader

    def discover_streams(self) -> list[Stream]:
        return [ErpOrdersStream(self, self.reader), ErpOrderRejectsStream(self)]

    def add_reject(self, err: RecordError, partition: str) -> None:
        self.logger.warning("quarantined %s", mask_text(str(err)))
        if len(self.rejects) >= MAX_REJECTS_KEPT:
            return
        self.rejects.append({"record_id": err.record_id, "_shop": partition, "code": err.code, "field": err.field,
                             "message": err.message,
                             "record": json.dumps(err.details.get("record"), ensure_ascii=False, default=str)})

    @classmethod
    def get_singer_command(cls) -> click.Command:
        return one_line_errors(super().get_singer_command(), cls.name)


def one_line_errors(command: click.Command, name: str) -> click.Command:
    """Our errors (bad config, unreachable database, refused login) end the CLI with one line saying what to
    fix and exit code 1 instead of a stack trace. Shared by tap-erp-sql and target-erp-sql."""
    main = command.main

    def wrapped(*args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return main(*args, **kwargs)
        except OrderhubError as exc:
            kind = "configuration error" if isinstance(exc, ConfigError) else "error"
            click.echo(f"{name}: {kind}: {mask_text(str(exc))}", err=True)
            raise SystemExit(1) from None

    command.main = wrapped  # type: ignore[method-assign]
    return command


if __name__ == "__main__":
    TapErpSql.cli()
