"""The unified status lifecycle (状态机): one canonical status set, legal transitions, and source status maps.

Canonical statuses, in lifecycle order::

    pending_payment → awaiting_confirmation → confirmed → allocated → partially_shipped → shipped
                    → delivered → completed            (branches: cancelled, closed; on_hold)

* Forward moves may skip steps (a poll can miss intermediate states); a move to a lower rank is **stale** and
  ignored (a late or out-of-order update never moves an order backwards). ``cancelled`` and ``closed`` are final
  (if a source reports both, ``closed`` wins whatever the order of arrival).
* ``on_hold`` is a branch, not a rank: a source that locks an order (JD ``LOCKED``, Taobao
  ``PAID_FORBID_CONSIGN``, Kingdee ``D`` 重新审核) sets a hold flag; the newest update (by the source's modified
  time) decides whether the hold is on. Before shipping, a held order shows ``on_hold``.
* Both rules are order-independent: applying any permutation of the same updates gives the same state.

Every status documented for Taobao/Tmall, JD, 1688, Douyin (reference: marketplaces §1.4, §2.4, §3.4, §4.4, §6.1),
Kingdee SAL_SaleOrder and Yonyou YonBIP (reference: erp §1.6, §3.3) is mapped below; a generic ERP table gets an
inline map in its mapping file. An unknown value is a :class:`RecordError` naming the value and the source.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from orderhub.connectors.common.errors import RecordError

PENDING_PAYMENT = "pending_payment"
AWAITING_CONFIRMATION = "awaiting_confirmation"
CONFIRMED = "confirmed"
ALLOCATED = "allocated"
PARTIALLY_SHIPPED = "partially_shipped"
SHIPPED = "shipped"
DELIVERED = "delivered"
COMPLETED = "completed"
CANCELLED = "cancelled"
CLOSED = "closed"
ON_HOLD = "on_hold"

RANK: dict[str, int] = {
    PENDING_PAYMENT: 10, AWAITING_CONFIRMATION: 20, CONFIRMED: 30, ALLOCATED: 40, PARTIALLY_SHIPPED: 50,
    SHIPPED: 60, DELIVERED: 70, COMPLETED: 80, CANCELLED: 90, CLOSED: 91,
}
STATUSES = tuple(RANK) + (ON_HOLD,)
FINAL = frozenset({CANCELLED, CLOSED})
#: Statuses from which a hold still stops the order (it has not left the warehouse yet).
HOLDABLE = frozenset({PENDING_PAYMENT, AWAITING_CONFIRMATION, CONFIRMED, ALLOCATED})

#: Legal transitions: every forward move (by rank) out of a non-final status, plus holding and releasing.
LEGAL_TRANSITIONS: dict[str, frozenset[str]] = {
    s: frozenset(t for t in RANK if RANK[t] > RANK[s]) | (frozenset({ON_HOLD}) if s in HOLDABLE else frozenset())
    for s in RANK if s not in FINAL
}
LEGAL_TRANSITIONS[ON_HOLD] = frozenset(RANK)
LEGAL_TRANSITIONS[CANCELLED] = frozenset({CLOSED})  # both final; when both arrive, closed wins in any order
LEGAL_TRANSITIONS[CLOSED] = frozenset()

# Line-level refund / return states (售后).
REFUND_STATES = ("none", "refund_requested", "returning", "returned", "refunded", "refund_rejected",
                 "refund_cancelled", "exchanging", "exchanged")

# --------------------------------------------------------------------------------------------------------------
# Source maps. Values are canonical statuses; ON_HOLD means "do not ship" (see module doc).
# --------------------------------------------------------------------------------------------------------------
TAOBAO = {  # Trade.status / Order.status, marketplaces §1.4 (official doc 102856)
    "TRADE_NO_CREATE_PAY": PENDING_PAYMENT, "WAIT_BUYER_PAY": PENDING_PAYMENT, "PAY_PENDING": PENDING_PAYMENT,
    "WAIT_SELLER_SEND_GOODS": AWAITING_CONFIRMATION, "SELLER_CONSIGNED_PART": PARTIALLY_SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": SHIPPED, "TRADE_BUYER_SIGNED": DELIVERED, "TRADE_FINISHED": COMPLETED,
    "TRADE_CLOSED": CLOSED, "TRADE_CLOSED_BY_TAOBAO": CANCELLED,
    "WAIT_PRE_AUTH_CONFIRM": ON_HOLD, "PAID_FORBID_CONSIGN": ON_HOLD,
    # query-only composites, accepted so a record echoing the filter value still maps
    "ALL_WAIT_PAY": PENDING_PAYMENT, "ALL_CLOSED": CLOSED,
}
TAOBAO_REFUND = {  # Order.refund_status, marketplaces §1.4
    "NO_REFUND": "none", "WAIT_SELLER_AGREE": "refund_requested", "WAIT_BUYER_RETURN_GOODS": "returning",
    "WAIT_SELLER_CONFIRM_GOODS": "returned", "SELLER_REFUSE_BUYER": "refund_rejected",
    "CLOSED": "refund_cancelled", "SUCCESS": "refunded",
}
JD = {  # POP OrderInfo.orderState, marketplaces §2.4, plus JdOrderInfo.status of orderListSearch
    "WAIT_SELLER_STOCK_OUT": AWAITING_CONFIRMATION, "WAIT_SELLER_DELIVERY": AWAITING_CONFIRMATION,
    "WAIT_SEND_CODE": AWAITING_CONFIRMATION, "WAIT_GOODS_RECEIVE_CONFIRM": SHIPPED, "FINISHED_L": COMPLETED,
    "TRADE_CANCELED": CANCELLED, "LOCKED": ON_HOLD, "PAUSE": ON_HOLD, "POP_ORDER_PAUSE": ON_HOLD,
    "NOT_PAY": PENDING_PAYMENT, "SUSPEND": ON_HOLD, "WAIT_DELIVERY": AWAITING_CONFIRMATION,
    "WAIT_SHIPMENTS": AWAITING_CONFIRMATION, "FINISH": COMPLETED, "CANCEL": CANCELLED, "LOCK": ON_HOLD,
}
ALIBABA1688 = {  # baseInfo.status, marketplaces §3.4
    "waitbuyerpay": PENDING_PAYMENT, "waitsellersend": AWAITING_CONFIRMATION, "waitlogisticstakein": SHIPPED,
    "waitbuyerreceive": SHIPPED, "waitbuyersign": SHIPPED, "signinsuccess": DELIVERED, "confirm_goods": DELIVERED,
    "success": COMPLETED, "cancel": CANCELLED, "terminated": CLOSED, "unenumerated": ON_HOLD,
}
ALIBABA1688_STEP = {  # stepOrderStatus (分阶段订单), marketplaces §3.4
    "waitactivate": PENDING_PAYMENT, "waitbuyerpay": PENDING_PAYMENT, "waitbuyerconfirmaction": PENDING_PAYMENT,
    "waitsellerpush": AWAITING_CONFIRMATION, "waitselleract": AWAITING_CONFIRMATION,
    "waitsellersend": AWAITING_CONFIRMATION, "waitbuyerreceive": SHIPPED, "success": COMPLETED,
    "settlebill": COMPLETED, "cancel": CANCELLED, "inactiveandcancel": CANCELLED,
}
ALIBABA1688_REFUND = {  # productItems.refundStatus and the orderList refundStatus filter values, §3.3
    "WAIT_SELLER_AGREE": "refund_requested", "REFUND_SUCCESS": "refunded", "REFUND_CLOSED": "refund_cancelled",
    "WAIT_BUYER_MODIFY": "refund_rejected", "WAIT_BUYER_SEND": "returning", "WAIT_SELLER_RECEIVE": "returned",
    "waitselleragree": "refund_requested", "refundsuccess": "refunded", "refundclose": "refund_cancelled",
    "waitbuyermodify": "refund_rejected", "waitbuyersend": "returning", "waitsellerreceive": "returned",
    "": "none",
}
DOUYIN = {  # order_status and main_status, marketplaces §4.4
    "1": PENDING_PAYMENT, "103": PENDING_PAYMENT, "105": AWAITING_CONFIRMATION, "2": AWAITING_CONFIRMATION,
    "101": PARTIALLY_SHIPPED, "3": SHIPPED, "4": CANCELLED, "5": COMPLETED,
    "21": CLOSED, "22": CLOSED, "39": CLOSED,
}
DOUYIN_AFTER_SALE = {  # after_sale_info.after_sale_status, §4.4
    "0": "none", "6": "refund_requested", "7": "returning", "27": "refund_rejected", "12": "refunded",
    "28": "refund_cancelled", "11": "returning", "29": "refund_rejected", "13": "exchanging", "14": "exchanged",
    "51": "refund_cancelled", "53": "refunded",
}
DOUYIN_REFUND = {"1": "refund_requested", "3": "refunded", "4": "refund_rejected", "0": "none"}

KINGDEE_DOCUMENT = {  # SAL_SaleOrder FDocumentStatus, erp §1.6
    "Z": AWAITING_CONFIRMATION,  # 暂存 (draft)
    "A": AWAITING_CONFIRMATION,  # 创建
    "B": AWAITING_CONFIRMATION,  # 审核中
    "C": CONFIRMED,              # 已审核
    "D": ON_HOLD,                # 重新审核: un-audited for changes → do not ship until audited again
}


def _kingdee() -> dict[str, str]:
    """Single document status (``C``) or the composite ``doc|close|cancel`` (``C|B|A``) built by the mapping
    from FDocumentStatus, FCloseStatus (A 未关闭, B 已关闭) and FCancelStatus (A 未作废, B 已作废)."""
    out = dict(KINGDEE_DOCUMENT)
    for doc, st in KINGDEE_DOCUMENT.items():
        for close in ("A", "B", ""):
            for cancel in ("A", "B", ""):
                out[f"{doc}|{close}|{cancel}"] = CANCELLED if cancel == "B" else CLOSED if close == "B" else st
    return out


KINGDEE = _kingdee()
KINGDEE_LINE = {"A": CONFIRMED, "B": CLOSED}  # entry FMrpCloseStatus (业务关闭) A normal, B closed
YONYOU = {  # YonBIP voucherorder statusCode / nextStatus, erp §3.3
    "CONFIRMORDER": AWAITING_CONFIRMATION, "APPROVING": AWAITING_CONFIRMATION, "DELIVERGOODS": CONFIRMED,
    "DELIVERY_PART": PARTIALLY_SHIPPED, "DELIVERY_TAKE_PART": PARTIALLY_SHIPPED, "TAKEDELIVERY": SHIPPED,
    "ENDORDER": COMPLETED, "CLOSEDORDER": CLOSED, "OPPOSE": CANCELLED,
}

BUILTIN_MAPS: dict[str, dict[str, str]] = {
    "taobao": TAOBAO, "tmall": TAOBAO, "taobao_refund": TAOBAO_REFUND, "jd": JD,
    "alibaba1688": ALIBABA1688, "alibaba1688_step": ALIBABA1688_STEP, "alibaba1688_refund": ALIBABA1688_REFUND,
    "douyin": DOUYIN, "douyin_after_sale": DOUYIN_AFTER_SALE, "douyin_refund": DOUYIN_REFUND,
    "kingdee": KINGDEE, "kingdee_line": KINGDEE_LINE, "yonyou": YONYOU,
}


class StatusMap:
    """Maps raw source values to canonical values; unknown values raise a :class:`RecordError`."""

    def __init__(self, name: str, table: Mapping[str, str], *, source: str, kind: str = "status",
                 allowed: tuple[str, ...] = STATUSES) -> None:
        bad = {k: v for k, v in table.items() if v not in allowed}
        if bad:
            from orderhub.connectors.common.errors import ConfigError

            raise ConfigError(f"maps to unknown canonical values {bad}; allowed: {', '.join(allowed)}",
                              key=f"{kind}_map {name}")
        self.name, self.source, self.kind = name, source, kind
        self.table = {str(k): v for k, v in table.items()}

    def __call__(self, raw: object, field: str = "source_status") -> str:
        key = raw if type(raw) is str else ("" if raw is None else str(raw))
        try:
            return self.table[key]
        except KeyError:
            raise RecordError(f"unknown {self.kind} {raw!r} from source {self.source!r} (map {self.name}); "
                              f"add it to the mapping's {self.kind}_map", code=f"unknown_{self.kind}",
                              field=field) from None


def status_map(spec: str | Mapping[str, str], *, source: str, kind: str = "status") -> StatusMap:
    """Build a map from a built-in name or an inline table (mapping files)."""
    allowed = REFUND_STATES if kind == "refund_status" else STATUSES
    if isinstance(spec, str):
        if spec not in BUILTIN_MAPS:
            from orderhub.connectors.common.errors import ConfigError

            raise ConfigError(f"unknown built-in map {spec!r}; choose one of {', '.join(sorted(BUILTIN_MAPS))} "
                              "or give an inline table", key=f"{kind}_map")
        return StatusMap(spec, BUILTIN_MAPS[spec], source=source, kind=kind, allowed=allowed)
    return StatusMap("inline", spec, source=source, kind=kind, allowed=allowed)


# --------------------------------------------------------------------------------------------------------------
# Merging updates
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusState:
    """What the hub keeps per order: the furthest lifecycle status, and the hold flag of the newest update."""

    base: str                       # furthest non-hold status seen ("" while only holds were seen)
    hold: bool = False              # newest update says "do not ship"
    newest_at: datetime | None = None
    newest_rank: int = 0

    @property
    def status(self) -> str:
        return ON_HOLD if self.hold and (self.base in HOLDABLE or not self.base) else self.base


def _key(at: datetime | None, canonical: str) -> tuple:
    rank = 25 if canonical == ON_HOLD else RANK[canonical]
    return (at.timestamp() if at is not None else float("-inf"), rank)


def apply_update(state: StatusState | None, canonical: str, at: datetime | None = None) -> tuple[StatusState, str]:
    """Apply one update; returns the new state and what happened: ``new``, ``advanced``, ``held``,
    ``released``, ``unchanged`` or ``stale`` (an older or backwards update, ignored for the lifecycle)."""
    if canonical not in RANK and canonical != ON_HOLD:
        raise ValueError(f"not a canonical status: {canonical!r}")
    is_hold = canonical == ON_HOLD
    if state is None:
        return StatusState("" if is_hold else canonical, is_hold, at, 25 if is_hold else RANK[canonical]), "new"
    base = state.base
    if not is_hold and RANK[canonical] > RANK.get(base, 0):
        base = canonical
    newer = _key(at, canonical) > ((state.newest_at.timestamp() if state.newest_at else float("-inf")),
                                    state.newest_rank)
    hold, newest_at, newest_rank = state.hold, state.newest_at, state.newest_rank
    if newer:
        hold, newest_at, newest_rank = is_hold, at, _key(at, canonical)[1]
    new = StatusState(base, hold, newest_at, newest_rank)
    if new.status == state.status:
        return new, ("unchanged" if canonical == state.status else "stale")
    if new.hold and not state.hold:
        return new, "held"
    if state.hold and not new.hold and new.base == state.base and new.base:
        return new, "released"
    return new, "advanced"


def is_backwards(old: str, new: str) -> bool:
    """True if moving ``old`` → ``new`` would go back in the lifecycle."""
    if new == ON_HOLD or old == ON_HOLD:
        return False
    return RANK[new] < RANK[old]
