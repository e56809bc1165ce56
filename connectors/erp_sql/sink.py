"""Sinks of ``target-erp-sql``: canonical orders → ERP tables through :class:`OrderWriter`, one transaction per
batch (other streams: :class:`~orderhub.connectors.common.sinks.IgnoredStreamSink`)."""
from __future__ import annotations

import typing as t

import fastjsonschema
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from orderhub.connectors.common.privacy import mask_text

if t.TYPE_CHECKING:
    from orderhub.connectors.erp_sql.target import TargetErpSql


class FastValidator(BaseJSONSchemaValidator):
    """fastjsonschema instead of jsonschema: record validation was ~5× the rest of a target (singer.md §3)."""

    def __init__(self, schema: dict[str, t.Any]) -> None:
        super().__init__(schema)
        try:
            self.validator = fastjsonschema.compile(schema, formats={"date-time": r".+", "date": r".+"})
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise InvalidJSONSchema(f"Schema Validation Error: {exc}") from exc

    def validate(self, record: dict[str, t.Any]) -> None:
        try:
            self.validator(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidRecord(f"Record Message Validation Error: {exc.message}", record) from exc


class ErpOrderSink(BatchSink):
    """Writes each batch of canonical orders in one transaction and records the results in the hub.

    A record that breaks the schema does not stop the run: it reaches the writer, which reports it as
    ``failed`` with the field named, while the other orders of the batch are written.
    """

    fail_on_record_validation_exception = False

    @property
    def datetime_error_treatment(self) -> DatetimeErrorTreatmentEnum:
        return DatetimeErrorTreatmentEnum.NULL

    @property
    def max_size(self) -> int:
        return int(self.config.get("batch_size_rows") or self._target_ref.writer.settings.batch_size)

    def __init__(self, target: "TargetErpSql", *args: t.Any, **kwargs: t.Any) -> None:
        self._target_ref = target
        super().__init__(target, *args, **kwargs)

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        return FastValidator(self.schema) if self.validate_schema else None

    def process_batch(self, context: dict) -> None:
        records = context.get("records") or []
        if not records:
            return
        results = self._target_ref.writer.write(records)
        self._target_ref.record_results(results)
        for r in results:
            if r["result"] == "failed":
                self.logger.warning("order %s failed: %s", r["order_id"], mask_text(r["message"] or ""))
