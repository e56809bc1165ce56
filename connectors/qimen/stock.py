"""Stock for the rules: the inventory-coverage rule consumes ``{(warehouse_code, sku): Decimal available}``."""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from orderhub.connectors.qimen.client import QimenClient


def stock_snapshot(client: QimenClient, warehouses: Iterable[str], skus: Iterable[str], *,
                   owner_code: str | None = None, inventory_type: str | None = "ZP") -> dict[tuple[str, str], Decimal]:
    """Available stock (QIMEN ``inventory.query`` ``quantity``, 未冻结; reference §5.6) for every
    (warehouse, SKU) pair asked for; a pair the WMS does not report is ``Decimal(0)``."""
    sku_list = list(dict.fromkeys(s for s in skus if s))
    out: dict[tuple[str, str], Decimal] = {}
    for wh in dict.fromkeys(w for w in warehouses if w):
        for sku, qty in client.query_inventory(wh, sku_list, owner_code=owner_code,
                                               inventory_type=inventory_type).items():
            out[(wh, sku)] = qty
    return out
