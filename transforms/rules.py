"""Rules, holds and routing: versioned rule sets (YAML) evaluated per canonical order.

A failing order is **held** (``held=True``): it does not flow on to the ERP or the WMS. Each hold reason is a
machine-readable code plus a human message. Routing picks a warehouse (product class, customer level, region,
capacity), priority rules set ``urgent``/``high``/``normal``, merge hints group orders of one receiver. Every
decision records the rule set's ``name@version``. Inputs that come from other systems (credit balances, a stock
snapshot from the WMS) arrive in a :class:`RuleContext`; the rules never do I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from orderhub.connectors.common.config import load_yaml
from orderhub.connectors.common.errors import ConfigError
from orderhub.transforms.cleaning import (PROVINCE_REGION, DuplicateDetector, SkuDictionary, TestOrderFilter,
                                          WindowMemory)
from orderhub.transforms.status import AWAITING_CONFIRMATION, CONFIRMED, HOLDABLE

_D0 = Decimal(0)
RULES_DIR = Path(__file__).parent / "rulesets"
TOP_KEYS = {"name", "version", "description", "credit", "inventory", "required_fields", "price_sanity",
            "test_orders", "duplicates", "unknown_sku", "routing", "priority", "merge", "auto_confirm"}


def _dec(v: Any, key: str) -> Decimal:
    try:
        return Decimal(str(v))
    except Exception:  # noqa: BLE001
        raise ConfigError(f"{v!r} is not a number", key=key) from None


@dataclass
class RuleContext:
    """What the rules need from outside: credit available per customer, stock per (warehouse, sku), customer
    levels, warehouse capacity left. Consumed as orders pass, so two orders cannot spend the same credit."""

    credit: dict[str, Decimal] | None = None            # customer_id → available credit (None: rule off)
    stock: dict[tuple[str, str], Decimal] | None = None  # (warehouse, sku) → available (None: rule off)
    customer_levels: dict[str, str] = field(default_factory=dict)
    capacity_left: dict[str, int] = field(default_factory=dict)
    receivers: WindowMemory = field(default_factory=WindowMemory)  # merge-hint memory per receiver


@dataclass
class Route:
    warehouse: str
    product_classes: frozenset[str] = frozenset()
    customer_levels: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()       # 大区 (华东…) or province names
    channels: frozenset[str] = frozenset()

    def matches(self, classes: set[str], level: str | None, province: str | None, region: str | None,
                channel: str | None) -> bool:
        if self.product_classes and not (classes & self.product_classes):
            return False
        if self.customer_levels and level not in self.customer_levels:
            return False
        if self.regions and province not in self.regions and region not in self.regions:
            return False
        if self.channels and channel not in self.channels:
            return False
        return True


def hold(order: dict, code: str, message: str) -> None:
    order["held"] = True
    order["hold_reasons"].append({"code": code, "message": message})


class RuleSet:
    """A compiled rule set. ``decide(order, ctx)`` fills ``held``, ``hold_reasons``, ``warehouse_code``,
    ``priority``, ``merge_hint`` and ``ruleset_version``."""

    def __init__(self, spec: dict, *, name: str = "inline") -> None:
        if not isinstance(spec, dict):
            raise ConfigError("a rule set must be a YAML table", key=name)
        unknown = set(spec) - TOP_KEYS
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}", key=name)
        if "version" not in spec:
            raise ConfigError("is required", key=f"{name}.version")
        self.name = str(spec.get("name", name))
        self.version = str(spec["version"])
        self.label = f"{self.name}@{self.version}"
        credit = spec.get("credit") or {}
        self.credit_factor = _dec(credit.get("factor", 1), "credit.factor") if credit else None
        self.credit_limits = {str(k): _dec(v, f"credit.customers.{k}") for k, v in (credit.get("customers") or {}).items()}
        inv = spec.get("inventory") or {}
        self.inventory_factor = _dec(inv.get("factor", 1), "inventory.factor") if inv else None
        self.required = tuple(spec.get("required_fields") or ())
        from orderhub.transforms.model import HEADER_FIELDS

        for f in self.required:
            if f not in HEADER_FIELDS:
                raise ConfigError(f"{f!r} is not a canonical field", key="required_fields")
        ps = spec.get("price_sanity") or {}
        self.min_price = _dec(ps["min_unit_price"], "price_sanity.min_unit_price") if "min_unit_price" in ps else None
        self.max_price = _dec(ps["max_unit_price"], "price_sanity.max_unit_price") if "max_unit_price" in ps else None
        self.max_total = _dec(ps["max_order_total"], "price_sanity.max_order_total") if "max_order_total" in ps else None
        self.tolerance = _dec(ps.get("amount_tolerance", "0.05"), "price_sanity.amount_tolerance") if ps else None
        self.check_total = bool(ps.get("check_order_total", False))
        to = spec.get("test_orders")
        self.test_filter = TestOrderFilter(
            keywords=tuple(to.get("keywords") or TestOrderFilter.keywords),
            customers=frozenset(map(str, to.get("customers") or ())),
            skus=frozenset(map(str, to.get("skus") or ()))) if to else None
        dup = spec.get("duplicates")
        self.dup_window = timedelta(minutes=float(dup.get("window_minutes", 10))) if dup else None
        self.unknown_sku_holds = (spec.get("unknown_sku") or "pass") == "hold"
        routing = spec.get("routing") or {}
        self.default_warehouse = routing.get("default_warehouse")
        self.routes: list[Route] = []
        for i, r in enumerate(routing.get("rules") or []):
            if "warehouse" not in r:
                raise ConfigError("is required", key=f"routing.rules[{i}].warehouse")
            when = r.get("when") or {}
            bad = set(when) - {"product_class", "customer_level", "region", "channel"}
            if bad:
                raise ConfigError(f"unknown condition(s) {sorted(bad)}", key=f"routing.rules[{i}].when")

            def fs(k: str) -> frozenset[str]:
                v = when.get(k) or ()
                return frozenset([v] if isinstance(v, str) else map(str, v))

            self.routes.append(Route(str(r["warehouse"]), fs("product_class"), fs("customer_level"), fs("region"),
                                     fs("channel")))
        self.capacity = {str(k): int(v) for k, v in (routing.get("capacity") or {}).items()}
        pr = spec.get("priority") or {}
        self.vip_levels = frozenset(map(str, pr.get("vip_levels") or ("vip",)))
        self.high_amount = _dec(pr["amount_threshold"], "priority.amount_threshold") if "amount_threshold" in pr else None
        self.urgent_words = tuple(pr.get("urgent_keywords") or ("加急",))
        mg = spec.get("merge") or {}
        self.merge_min = int(mg.get("min_orders", 0)) if mg else 0
        self.merge_window = timedelta(hours=float(mg.get("window_hours", 24)))
        self.auto_confirm = bool(spec.get("auto_confirm", True))

    @classmethod
    def load(cls, name_or_path: str | Path) -> "RuleSet":
        p = Path(name_or_path)
        if not p.suffix:
            p = RULES_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            raise ConfigError(f"rule set {name_or_path!r} not found", key="rules")
        return cls(load_yaml(p, resolve_refs=False), name=p.stem)

    # ------------------------------------------------------------------------------------------------------
    def decide_batch(self, orders: list[dict], ctx: RuleContext, *, skus: SkuDictionary,
                     test_filter: TestOrderFilter | None = None, duplicates: DuplicateDetector | None = None) -> None:
        tf = self.test_filter or test_filter
        dd = duplicates if self.dup_window is not None else None
        if dd is not None:
            dd.window = self.dup_window
        for o in orders:
            self.decide(o, ctx, skus=skus, test_filter=tf, duplicates=dd)

    def decide(self, o: dict, ctx: RuleContext, *, skus: SkuDictionary, test_filter: TestOrderFilter | None = None,
               duplicates: DuplicateDetector | None = None) -> dict:
        o["held"] = False
        o["hold_reasons"] = []
        o["ruleset_version"] = self.label
        o["merge_hint"] = None
        status = o["status"]
        lines = o["lines"]
        cust = o.get("customer_id")
        level = o.get("customer_level") or ctx.customer_levels.get(cust or "")
        if level and not o.get("customer_level"):
            o["customer_level"] = level
        # priority: 加急 > VIP or big amount > normal
        total = o.get("total_amount") or _D0
        if o.get("is_urgent") or any(w in (o.get("special_requirements") or "") for w in self.urgent_words):
            o["priority"] = "urgent"
            o["is_urgent"] = True
        elif level in self.vip_levels or (self.high_amount is not None and total >= self.high_amount):
            o["priority"] = "high"
        else:
            o["priority"] = "normal"
        if status not in HOLDABLE:  # already shipped, delivered, final: nothing to decide any more
            o["warehouse_code"] = o.get("warehouse_hint")
            return o
        # required fields
        for f in self.required:
            if not o.get(f):
                hold(o, "missing_field", f"required field {f} is empty")
        # test orders, duplicates
        if test_filter is not None:
            why = test_filter.is_test(o)
            if why:
                hold(o, "test_order", f"looks like a test order: {why}")
        if duplicates is not None:
            dup = duplicates.check(o)
            if dup is not None:
                hold(o, "duplicate_submission", f"same customer, lines and amount as order {dup} within "
                     f"{int(duplicates.window.total_seconds() // 60)} min")
        # price sanity
        if self.tolerance is not None:
            for ln in lines:
                p, a, q = ln.get("unit_price"), ln.get("amount"), ln["qty"]
                if p is None:
                    hold(o, "price_missing", f"line {ln['line_no']} ({ln.get('canonical_sku')}) has no price")
                    continue
                if self.min_price is not None and p < self.min_price and not ln.get("is_gift"):
                    hold(o, "price_too_low", f"line {ln['line_no']} unit price {p} < {self.min_price}")
                if self.max_price is not None and p > self.max_price:
                    hold(o, "price_too_high", f"line {ln['line_no']} unit price {p} > {self.max_price}")
                if a is not None and abs(p * q - a) > self.tolerance + a * Decimal("0.5"):
                    hold(o, "amount_mismatch", f"line {ln['line_no']} amount {a} is far from qty {q} × price {p}")
            if self.max_total is not None and total > self.max_total:
                hold(o, "total_too_high", f"order total {total} > {self.max_total}")
            if self.check_total:
                expect = (o.get("goods_amount") or _D0) + (o.get("shipping_fee") or _D0) - (o.get("discount_amount") or _D0)
                if abs(expect - total) > self.tolerance:
                    hold(o, "amount_mismatch", f"order total {total} ≠ goods + shipping − discount = {expect}")
        if self.unknown_sku_holds:
            for ln in lines:
                if skus.lookup(ln.get("source_sku"), ln.get("sku_name")) is None:
                    hold(o, "unknown_sku", f"line {ln['line_no']} SKU {ln.get('source_sku')!r} is not in the SKU "
                         f"dictionary {skus.label}")
        # credit: available ≥ total × factor; passing orders consume credit
        credit_on = self.credit_factor is not None and (ctx.credit is not None or bool(self.credit_limits))
        if credit_on:
            pool = ctx.credit if ctx.credit is not None else self.credit_limits
            avail = pool.get(cust or "")
            need = total * self.credit_factor
            if avail is None:
                hold(o, "credit_unknown", f"customer {cust} has no credit line")
            elif avail < need:
                hold(o, "credit_exceeded", f"order needs {need} but customer {cust} has {avail} available")
        # routing
        wh = self._route(o, skus, ctx)
        o["warehouse_code"] = wh
        if wh is None and (self.routes or self.default_warehouse):
            hold(o, "no_warehouse", "no routing rule matched and no default warehouse is set")
        # inventory coverage at the chosen warehouse
        if self.inventory_factor is not None and ctx.stock is not None and wh is not None:
            need_by_sku: dict[str, Decimal] = {}
            for ln in lines:
                sku = ln.get("canonical_sku") or ""
                need_by_sku[sku] = need_by_sku.get(sku, _D0) + ln["qty"] * self.inventory_factor
            short = [(s, n, ctx.stock.get((wh, s), _D0)) for s, n in need_by_sku.items()
                     if ctx.stock.get((wh, s), _D0) < n]
            if short:
                hold(o, "insufficient_stock", "; ".join(f"{s}: need {n}, {wh} has {a}" for s, n, a in short))
            elif not o["held"]:
                for s, n in need_by_sku.items():
                    ctx.stock[(wh, s)] = ctx.stock.get((wh, s), _D0) - n
        if not o["held"]:
            if credit_on:
                pool = ctx.credit if ctx.credit is not None else self.credit_limits
                pool[cust or ""] = pool.get(cust or "", _D0) - total * self.credit_factor
            if wh in ctx.capacity_left:
                ctx.capacity_left[wh] -= 1
            if self.auto_confirm and status == AWAITING_CONFIRMATION:
                o["status"] = CONFIRMED
                for ln in lines:  # lines that only echoed the order status follow it
                    if ln.get("line_status") == AWAITING_CONFIRMATION:
                        ln["line_status"] = CONFIRMED
        # merge hints: same receiver ≥ N orders within the window
        if self.merge_min:
            o["merge_hint"] = self.merge_hint(ctx, (o.get("receiver_name"), o.get("receiver_mobile") or
                                                    o.get("privacy_id"), o.get("receiver_address")),
                                              o.get("created_at"), o["order_id"])
        return o

    def merge_hint(self, ctx: RuleContext, key: tuple, at: Any, order_id: str) -> str | None:
        """Remember an order under its receiver; a hint once the receiver has ``min_orders`` within the window."""
        if not any(key):
            return None
        seen = ctx.receivers.groups.get(key, [])
        if order_id not in {x[1] for x in seen}:
            seen = ctx.receivers.add(key, (at, order_id), self.merge_window)
        recent = [x for x in seen if at is None or x[0] is None or abs(at - x[0]) <= self.merge_window]
        if len(recent) >= self.merge_min:
            return "m_" + min(x[1] for x in recent)[2:14]
        return None

    def _route(self, o: dict, skus: SkuDictionary, ctx: RuleContext) -> str | None:
        if o.get("warehouse_hint"):
            return o["warehouse_hint"]
        classes = {skus.product_class.get(ln.get("canonical_sku") or "", "") for ln in o["lines"]} - {""}
        prov = o.get("receiver_province")
        region = PROVINCE_REGION.get(prov or "")
        level, channel = o.get("customer_level"), o.get("channel")
        for r in self.routes:
            if r.matches(classes, level, prov, region, channel):
                if self.capacity and ctx.capacity_left.setdefault(r.warehouse, self.capacity.get(r.warehouse, 1 << 30)) <= 0:
                    continue  # full: try the next candidate
                return r.warehouse
        return self.default_warehouse
