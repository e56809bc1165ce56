"""``target-qimen``: canonical orders (stream ``canonical_orders``) → QIMEN WMS delivery orders.

Only orders that passed the rules are sent (``held`` false and status in ``sendable_statuses``); each is sent
once as ``deliveryorder.create`` with a stable deliveryOrderCode, so re-runs never create a second shipment.
All sending logic is :class:`~orderhub.connectors.qimen.writer.QimenDeliveryWriter`; this is the Singer skin.
"""
from __future__ import annotations

import logging

from singer_sdk import Sink, Target
from singer_sdk import typing as th

from orderhub.connectors.common.sinks import IgnoredStreamSink
from orderhub.connectors.qimen.sink import QimenDeliverySink
from orderhub.connectors.qimen.writer import DEFAULTS, QimenDeliveryWriter

_strs = th.ArrayType(th.StringType)


class TargetQimen(Target):
    name = "target-qimen"
    config_jsonschema = th.PropertiesList(
        th.Property("url", th.StringType, required=True,
                    description="QIMEN endpoint, e.g. http://qimen.api.taobao.com/router/qimen/service"),
        th.Property("app_key", th.StringType, required=True, description="TOP/QIMEN app_key"),
        th.Property("app_secret", th.StringType, required=True, secret=True, description="app secret (signing)"),
        th.Property("customer_id", th.StringType, required=True, description="customerId issued by the WMS"),
        th.Property("owner_code", th.StringType, required=True, description="ownerCode (货主编码) in the WMS"),
        th.Property("method_style", th.StringType, default=DEFAULTS["method_style"],
                    allowed_values=["full", "short"],
                    description="full: taobao.qimen.deliveryorder.create; short: deliveryorder.create"),
        th.Property("api_version", th.StringType, default=DEFAULTS["api_version"]),
        th.Property("target_app_key", th.StringType, description="optional target_app_key of the WMS"),
        th.Property("timeout_seconds", th.NumberType, default=DEFAULTS["timeout_seconds"]),
        th.Property("retry_attempts", th.IntegerType, default=DEFAULTS["retry_attempts"],
                    description="attempts per call, first included (transient errors only)"),
        th.Property("retry_base_seconds", th.NumberType, default=DEFAULTS["retry_base_seconds"]),
        th.Property("retry_cap_seconds", th.NumberType, default=DEFAULTS["retry_cap_seconds"]),
        th.Property("max_qps", th.NumberType, description="client-side calls per second limit"),
        th.Property("breaker_failure_threshold", th.IntegerType, default=DEFAULTS["breaker_failure_threshold"],
                    description="consecutive failed orders that open the circuit"),
        th.Property("breaker_cooldown_seconds", th.NumberType, default=DEFAULTS["breaker_cooldown_seconds"],
                    description="open-circuit pause before one probe order is sent"),
        th.Property("sendable_statuses", _strs, default=DEFAULTS["sendable_statuses"],
                    description="canonical statuses that are sent to the WMS"),
        th.Property("default_warehouse_code", th.StringType,
                    description="warehouseCode when routing chose none (OTHER = the WMS chooses)"),
        th.Property("logistics_code", th.StringType, default=DEFAULTS["logistics_code"]),
        th.Property("shop_nick", th.StringType, description="shopNick; default: the order's shop_id"),
        th.Property("sender_info", th.ObjectType(additional_properties=th.StringType),
                    description="senderInfo: name, mobile, province, city, area, detailAddress, …"),
        th.Property("order_type_map", th.ObjectType(additional_properties=th.StringType),
                    description="canonical order_type → QIMEN orderType (JYCK, HHCK, BFCK, QTCK)"),
        th.Property("platform_codes", th.ObjectType(additional_properties=th.StringType),
                    description="canonical channel → sourcePlatformCode"),
        th.Property("urgent_priorities", _strs, default=DEFAULTS["urgent_priorities"],
                    description="priorities sent as isUrgency=Y"),
        th.Property("inventory_type", th.StringType, default=DEFAULTS["inventory_type"]),
        th.Property("code_prefix", th.StringType, default=DEFAULTS["code_prefix"],
                    description="prefix of deliveryOrderCode (never change it once orders were sent)"),
        th.Property("skip_line_statuses", _strs, description="line statuses not shipped"),
        th.Property("skip_refund_statuses", _strs, description="line refund statuses not shipped"),
        th.Property("stream_name", th.StringType, default="canonical_orders"),
        th.Property("hub_url", th.StringType, description="hub store URL: record each write in lineage"),
        th.Property("run_id", th.StringType, description="run id for lineage (default: a new uuid)"),
        th.Property("results_path", th.StringType, description="append one JSON line per order result here"),
        th.Property("hub_batch_size", th.IntegerType, default=DEFAULTS["hub_batch_size"]),
        th.Property("skip_delivered", th.BooleanType, default=DEFAULTS["skip_delivered"],
                    description="with hub_url: orders the hub's delivery ledger lists are not sent again"),
    ).to_dict()

    _writer: QimenDeliveryWriter | None = None

    @property
    def writer(self) -> QimenDeliveryWriter:
        """One writer (client, breaker, lineage buffer) per target run."""
        if self._writer is None:
            httpx_log = logging.getLogger("httpx")
            if httpx_log.level == logging.NOTSET:  # one INFO line per order otherwise; our summary says it all
                httpx_log.setLevel(logging.WARNING)
            self._writer = QimenDeliveryWriter.from_config(dict(self.config))
        return self._writer

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        if stream_name == (self.config.get("stream_name") or "canonical_orders"):
            return QimenDeliverySink
        return IgnoredStreamSink

    def process_endofpipe(self) -> None:
        super().process_endofpipe()
        if self._writer is not None:
            self._writer.close()
            self.logger.info("qimen run %s: %s; breaker %s", self._writer.run_id, self._writer.summary(),
                             self._writer.breaker)


if __name__ == "__main__":
    TargetQimen.cli()
