"""``target-erp-sql``: canonical orders (stream ``canonical_orders``) → an ERP database, either its order tables
or the interface table (中间表), with per-dialect upserts in one transaction per batch (reference erp.md §4).

All writing is :class:`~orderhub.connectors.erp_sql.writer.OrderWriter`; this module is the Singer skin: the
settings, the sink choice and the lineage of each write in the hub (``hub_url``).
"""
from __future__ import annotations

import typing as t
import uuid

import click
from singer_sdk import Sink, Target
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader

from orderhub.connectors.common.lineage import record_target_writes
from orderhub.connectors.common.sinks import IgnoredStreamSink
from orderhub.connectors.erp_sql.sink import ErpOrderSink
from orderhub.connectors.erp_sql.tap import one_line_errors
from orderhub.connectors.erp_sql.writer import WRITER_KEYS, OrderWriter, WriterSettings

_obj = th.ObjectType(additional_properties=True)


class TargetErpSql(Target):
    """Singer target writing canonical orders into ERP tables or the interface table (中间表) of a MySQL/MariaDB,
    SQL Server, Oracle or PostgreSQL database; idempotent per order, one transaction per batch."""

    name = "target-erp-sql"
    message_reader_class = MsgSpecReader
    config_jsonschema = th.PropertiesList(
        th.Property("url", th.StringType, secret=True, description=WRITER_KEYS["url"]),
        th.Property("url_env", th.StringType, description=WRITER_KEYS["url_env"]),
        th.Property("mode", th.StringType, allowed_values=["interface", "tables"], description=WRITER_KEYS["mode"]),
        th.Property("target_name", th.StringType, description=WRITER_KEYS["target_name"]),
        th.Property("schema", th.StringType, description=WRITER_KEYS["schema"]),
        th.Property("header_table", th.StringType, description=WRITER_KEYS["header_table"]),
        th.Property("line_table", th.StringType, description=WRITER_KEYS["line_table"]),
        th.Property("header_columns", _obj, description=WRITER_KEYS["header_columns"]),
        th.Property("line_columns", _obj, description=WRITER_KEYS["line_columns"]),
        th.Property("header_key", th.CustomType({"type": ["string", "array"]}), description=WRITER_KEYS["header_key"]),
        th.Property("line_parent", _obj, description=WRITER_KEYS["line_parent"]),
        th.Property("ref_column", th.StringType, description=WRITER_KEYS["ref_column"]),
        th.Property("idempotency_key", th.StringType, description=WRITER_KEYS["idempotency_key"]),
        th.Property("write_log_table", th.StringType, description=WRITER_KEYS["write_log_table"]),
        th.Property("create_tables", th.BooleanType, description=WRITER_KEYS["create_tables"]),
        th.Property("timezone", th.StringType, description=WRITER_KEYS["timezone"]),
        th.Property("skip_held", th.BooleanType, description=WRITER_KEYS["skip_held"]),
        th.Property("payload_column", th.StringType, description=WRITER_KEYS["payload_column"]),
        th.Property("batch_size", th.IntegerType, description=WRITER_KEYS["batch_size"]),
        th.Property("connect_timeout", th.IntegerType, description=WRITER_KEYS["connect_timeout"]),
        th.Property("retry_attempts", th.IntegerType, description=WRITER_KEYS["retry_attempts"]),
        th.Property("stream_name", th.StringType, default="canonical_orders",
                    description="the stream holding canonical orders"),
        th.Property("hub_url", th.StringType, description="hub store URL: record each write in lineage"),
        th.Property("run_id", th.StringType, description="run id for lineage (default: a new uuid)"),
    ).to_dict()

    _writer: OrderWriter | None = None

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        own = {"stream_name", "hub_url", "run_id"}
        builtin = set(self.config_jsonschema.get("properties", {})) - set(WRITER_KEYS)
        # Settings are checked at start (a typo stops the run before any input is read); the database is
        # first touched when the canonical_orders stream arrives.
        self.settings = WriterSettings.from_config(
            {k: v for k, v in self.config.items() if k not in builtin and k not in own})

    @property
    def writer(self) -> OrderWriter:
        if self._writer is None:
            self._writer = OrderWriter(self.settings, run_id=self.config.get("run_id") or uuid.uuid4().hex)
        return self._writer

    def record_results(self, results: list[dict]) -> None:
        w = self.writer
        record_target_writes(self.config.get("hub_url"), w.run_id, w.settings.target_name, results)

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        if stream_name == (self.config.get("stream_name") or "canonical_orders"):
            _ = self.writer  # fail early on bad settings or an unreachable database
            self.writer._setup()
            return ErpOrderSink
        return IgnoredStreamSink

    def process_endofpipe(self) -> None:
        super().process_endofpipe()
        if self._writer is not None:
            self.logger.info("target-erp-sql run %s: %s", self._writer.run_id, self._writer.counts)
            self._writer.close()

    @classmethod
    def get_singer_command(cls) -> click.Command:
        return one_line_errors(super().get_singer_command(), cls.name)


if __name__ == "__main__":
    TargetErpSql.cli()
