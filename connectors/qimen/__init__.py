"""QIMEN (奇门) WMS connector: protocol client, delivery-order writer, stock snapshot, ``target-qimen``."""
from orderhub.connectors.qimen.breaker import CircuitBreaker
from orderhub.connectors.qimen.client import QimenClient, sign
from orderhub.connectors.qimen.delivery import DeliverySettings, build_delivery_order, delivery_order_code
from orderhub.connectors.qimen.stock import stock_snapshot
from orderhub.connectors.qimen.writer import QimenDeliveryWriter

__all__ = ["CircuitBreaker", "DeliverySettings", "QimenClient", "QimenDeliveryWriter", "build_delivery_order",
           "delivery_order_code", "sign", "stock_snapshot"]
