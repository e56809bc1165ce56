"""Singer sink pieces every orderhub target shares."""
from __future__ import annotations

import typing as t

from singer_sdk.sinks import RecordSink


class IgnoredStreamSink(RecordSink):
    """Any stream other than the canonical orders: read and dropped (the targets take orders only)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger.warning("stream %r is not %r; its records are ignored", self.stream_name,
                            self.config.get("stream_name") or "canonical_orders")

    def process_record(self, record: dict, context: dict) -> None:
        return None
