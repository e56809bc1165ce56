"""Sinks of ``target-qimen``: canonical orders → QIMEN delivery orders, one call per order as it arrives."""
from __future__ import annotations

import typing as t

from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.sinks import RecordSink

if t.TYPE_CHECKING:
    from orderhub.connectors.qimen.target import TargetQimen


class QimenDeliverySink(RecordSink):
    """Sends each canonical order through the target's :class:`QimenDeliveryWriter` as soon as it is read,
    so an interrupted run has already delivered what it read (and a re-run finds those as ``unchanged``).

    A record that breaks the schema is not a reason to stop the run: it reaches the writer, which reports it
    as ``failed`` with the field named, and the other orders go on.
    """

    fail_on_record_validation_exception = False

    @property
    def datetime_error_treatment(self) -> DatetimeErrorTreatmentEnum:
        # An unparsable time becomes None, and the writer then names the field; it must not stop the run.
        return DatetimeErrorTreatmentEnum.NULL

    def __init__(self, target: "TargetQimen", *args: t.Any, **kwargs: t.Any) -> None:
        self._target = target
        super().__init__(target, *args, **kwargs)

    def process_record(self, record: dict, context: dict) -> None:
        result = self._target.writer.send_one(record)
        if result["result"] in ("failed", "held"):
            self.logger.warning("order %s %s: %s (%s)", result["order_id"], result["result"], result["reason"],
                                result["message"])

    def clean_up(self) -> None:
        self._target.writer.flush()
        super().clean_up()
