"""Cleaning: SKU/alias dictionary, CN mobile validation, address normalization, test-order filter and
duplicate-submission detection. Pure functions and small in-memory indexes; no I/O, no clock."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from orderhub.connectors.common.config import load_yaml
from orderhub.connectors.common.errors import ConfigError, RecordError

# ---------------------------------------------------------------------------------------------------------------
# SKU / alias dictionary
# ---------------------------------------------------------------------------------------------------------------
_FOLD_DROP = re.compile(r"[\s\-_/·.]+")


def fold(text: str) -> str:
    """Fold for alias matching: NFKC (full-width → half-width), case-folded, spaces and - _ / · . dropped."""
    return _FOLD_DROP.sub("", unicodedata.normalize("NFKC", text).casefold())


class SkuDictionary:
    """Maps source SKUs and product names to one canonical SKU code.

    Exact aliases are looked up first, then the folded form (``奔驰C200`` / ``Mercedes-Benz C200`` /
    ``MB-C200`` / ``ｍｂ－ｃ２００`` all reach ``MB-C200`` when listed as aliases). Unknown SKUs pass through
    unchanged unless ``strict`` (then the rules hold the order with ``unknown_sku``).
    """

    def __init__(self, entries: dict[str, dict[str, Any]] | None = None, *, version: str = "0",
                 strict: bool = False, name: str = "skus") -> None:
        self.version, self.strict, self.name = str(version), strict, name
        self.exact: dict[str, str] = {}
        self.folded: dict[str, str] = {}
        self.product_class: dict[str, str] = {}
        self._cache: dict[str, str | None] = {}
        for code, entry in (entries or {}).items():
            entry = entry or {}
            if not isinstance(entry, dict):
                raise ConfigError("must be a table with aliases/name/class", key=f"skus.{code}")
            code = str(code)
            for alias in [code, *(entry.get("aliases") or []), *([entry["name"]] if entry.get("name") else [])]:
                alias = str(alias)
                other = self.folded.get(fold(alias))
                if other is not None and other != code:
                    raise ConfigError(f"alias {alias!r} folds to the same key as an alias of {other!r}",
                                      key=f"skus.{code}.aliases")
                self.exact[alias] = code
                self.folded[fold(alias)] = code
            if entry.get("class"):
                self.product_class[code] = str(entry["class"])

    @classmethod
    def load(cls, path: str | Path) -> "SkuDictionary":
        spec = load_yaml(path, resolve_refs=False) or {}
        return cls(spec.get("skus") or {}, version=str(spec.get("version", "0")), strict=bool(spec.get("strict")),
                   name=Path(path).stem)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def lookup(self, source_sku: str | None, name: str | None = None) -> str | None:
        """Canonical code for a source SKU (or, failing that, its product name); ``None`` if unknown."""
        if source_sku is not None:
            hit = self.exact.get(source_sku)
            if hit is not None:
                return hit
            try:
                return self._cache[source_sku]
            except KeyError:
                hit = self._cache[source_sku] = self.folded.get(fold(source_sku))
            if hit is not None:
                return hit
        if name:
            hit = self.exact.get(name)
            if hit is None:
                hit = self.folded.get(fold(name))
            return hit
        return None

    def canonical_code(self, source_sku: str | None, name: str | None = None) -> str | None:
        """Canonical code, or the source code when the SKU is unknown."""
        hit = self.exact.get(source_sku) if source_sku is not None else None
        if hit is not None:
            return hit
        hit = self.lookup(source_sku, name)
        if hit is not None:
            return hit
        return source_sku.strip() if source_sku else None

    def canonical(self, source_sku: str | None, name: str | None = None) -> tuple[str | None, bool]:
        """(canonical code, known?). Unknown SKUs keep the source code."""
        hit = self.lookup(source_sku, name)
        if hit is not None:
            return hit, True
        return (source_sku.strip() if source_sku else None), False


# ---------------------------------------------------------------------------------------------------------------
# Phones
# ---------------------------------------------------------------------------------------------------------------
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}(-\d{1,6})?$")
_PHONE_STRIP = re.compile(r"[\s\-()（）]")
_VIRTUAL = re.compile(r"^1[3-9]\d{9}[-_转#]\d{1,6}$")


def normalize_mobile(value: str | None, field: str = "receiver_mobile") -> str | None:
    """Validate a CN mobile number: ``+86 138-1234-5678`` → ``13812345678``. Values the platform masked
    (containing ``*``) or privacy-protected virtual numbers (``1xx…-1234`` extension form) are kept as given."""
    if value is None or value == "":
        return None
    if "*" in value:
        return value
    if len(value) == 11 and _MOBILE.match(value):
        return value
    s = _PHONE_STRIP.sub("", value)
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    if _MOBILE.match(s):
        return s
    if _VIRTUAL.match(value.strip()):  # privacy virtual number with extension: 13812345678-1234 / 转1234
        return value.strip()
    if _LANDLINE.match(s):
        return value.strip()
    raise RecordError(f"{mask_for_error(value)!r} is not a valid mainland China mobile number", code="bad_phone",
                      field=field)


def mask_for_error(value: str) -> str:
    from orderhub.connectors.common.privacy import mask_phone

    return mask_phone(value[:32]) or ""


# ---------------------------------------------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------------------------------------------
PROVINCES = {
    "北京": "北京市", "天津": "天津市", "上海": "上海市", "重庆": "重庆市", "河北": "河北省", "山西": "山西省",
    "辽宁": "辽宁省", "吉林": "吉林省", "黑龙江": "黑龙江省", "江苏": "江苏省", "浙江": "浙江省", "安徽": "安徽省",
    "福建": "福建省", "江西": "江西省", "山东": "山东省", "河南": "河南省", "湖北": "湖北省", "湖南": "湖南省",
    "广东": "广东省", "海南": "海南省", "四川": "四川省", "贵州": "贵州省", "云南": "云南省", "陕西": "陕西省",
    "甘肃": "甘肃省", "青海": "青海省", "台湾": "台湾省", "内蒙古": "内蒙古自治区", "广西": "广西壮族自治区",
    "西藏": "西藏自治区", "宁夏": "宁夏回族自治区", "新疆": "新疆维吾尔自治区", "香港": "香港特别行政区",
    "澳门": "澳门特别行政区",
}
MUNICIPALITIES = {"北京市", "天津市", "上海市", "重庆市"}
REGIONS = {  # for routing by region (大区)
    "华东": {"上海市", "江苏省", "浙江省", "安徽省", "福建省", "江西省", "山东省"},
    "华南": {"广东省", "广西壮族自治区", "海南省", "香港特别行政区", "澳门特别行政区"},
    "华北": {"北京市", "天津市", "河北省", "山西省", "内蒙古自治区"},
    "华中": {"河南省", "湖北省", "湖南省"},
    "西南": {"重庆市", "四川省", "贵州省", "云南省", "西藏自治区"},
    "西北": {"陕西省", "甘肃省", "青海省", "宁夏回族自治区", "新疆维吾尔自治区"},
    "东北": {"辽宁省", "吉林省", "黑龙江省"},
}
PROVINCE_REGION = {p: r for r, ps in REGIONS.items() for p in ps}
_PROV_PREFIX = sorted(((full, short) for short, full in PROVINCES.items()), key=lambda x: -len(x[0]))
_CITY = re.compile(r"^(.{1,12}?(?:自治州|地区|盟|市))")
_DISTRICT = re.compile(r"^(.{1,12}?(?:自治县|自治旗|新区|区|县|旗|市))")


@dataclass(frozen=True)
class Address:
    province: str | None
    city: str | None
    district: str | None
    detail: str | None


def normalize_address(province: str | None, city: str | None, district: str | None,
                      address: str | None) -> Address:
    """Fill province/city/district from the address text when they are missing, and expand short province
    names (江苏 → 江苏省). Pattern-based: it splits on the administrative suffixes, it does not check that a
    district belongs to its city."""
    prov = PROVINCES.get(province.removesuffix("省").removesuffix("市"), province) if province else None
    rest = address.strip() if address else ""
    if rest:
        rest = unicodedata.normalize("NFKC", rest) if not rest.isascii() and "　" in rest else rest
        for full, short in _PROV_PREFIX:
            if rest.startswith(full):
                prov = prov or full
                rest = rest[len(full):]
                break
            if rest.startswith(short):
                prov = prov or PROVINCES[short]
                rest = rest[len(short):]
                break
    if not city and prov in MUNICIPALITIES:
        city = prov
        if rest.startswith(prov):
            rest = rest[len(prov):]
    if rest and city and rest.startswith(city):
        rest = rest[len(city):]
    elif rest and not city:
        m = _CITY.match(rest)
        if m:
            city, rest = m.group(1), rest[m.end():]
    if rest and district and rest.startswith(district):
        rest = rest[len(district):]
    elif rest and not district:
        m = _DISTRICT.match(rest)
        if m:
            district, rest = m.group(1), rest[m.end():]
    return Address(prov, city, district, address)


_addr_cache: dict[tuple, Address] = {}


def normalize_address_cached(province: str | None, city: str | None, district: str | None,
                             address: str | None) -> Address:
    key = (province, city, district, address)
    hit = _addr_cache.get(key)
    if hit is None:
        if len(_addr_cache) > 200_000:
            _addr_cache.clear()
        hit = _addr_cache[key] = normalize_address(province, city, district, address)
    return hit


# ---------------------------------------------------------------------------------------------------------------
# Test orders and duplicate submissions
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TestOrderFilter:
    __test__ = False  # not a pytest test class
    """Flags test orders (测试单): keywords in customer/receiver name or remarks, or listed SKUs/customers."""

    keywords: tuple[str, ...] = ("测试订单", "测试单", "test order", "TEST-ORDER")
    customers: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._re = re.compile("|".join(re.escape(k) for k in self.keywords)) if self.keywords else None

    _FIELDS = ("customer_name", "receiver_name", "special_requirements", "seller_memo")

    def is_test(self, order: dict) -> str | None:
        """Why the order looks like a test order, or ``None``."""
        if self._re is not None:
            g = order.get
            text = f"{g('customer_name')}\x1f{g('receiver_name')}\x1f{g('special_requirements')}\x1f{g('seller_memo')}"
            if self._re.search(text):
                for f in self._FIELDS:
                    v = order.get(f)
                    if v and self._re.search(v):
                        return f"{f} contains a test-order keyword"
        if self.customers and order.get("customer_id") in self.customers:
            return "customer is a test account"
        if self.skus:
            for ln in order["lines"]:
                if ln.get("canonical_sku") in self.skus:
                    return f"line SKU {ln['canonical_sku']} is a test SKU"
        return None


class WindowMemory:
    """Entries ``(time, …)`` grouped by key, forgotten once they are older than ``2 × window`` behind the newest
    time seen — so duplicate and merge memories stay flat on long runs. ``groups[key]`` is the live list."""

    def __init__(self) -> None:
        from collections import deque

        self.groups: dict[Any, list[tuple]] = {}
        self._order: deque = deque()
        self._newest: datetime | None = None

    def add(self, key: Any, entry: tuple, window: timedelta) -> list[tuple]:
        """Remember ``entry`` (its first item is its time, or None) under ``key``; return the key's live list."""
        at = entry[0]
        if at is not None:
            if self._newest is None or at > self._newest:
                self._newest = at
            horizon = self._newest - 2 * window
            q = self._order
            while q and q[0][0] < horizon:
                _, old_key = q.popleft()
                lst = self.groups.get(old_key)
                if lst is not None:
                    lst[:] = [e for e in lst if e[0] is None or e[0] >= horizon]
                    if not lst:
                        del self.groups[old_key]
            q.append((at, key))
        lst = self.groups.setdefault(key, [])
        lst.append(entry)
        return lst


@dataclass
class DuplicateDetector:
    """Duplicate submission (重复下单): same customer, same lines (SKU and qty), same amount, a different source
    order id, created within ``window``. ``seen`` may be preloaded from the hub with recent orders."""

    window: timedelta = timedelta(minutes=10)
    memory: WindowMemory = field(default_factory=WindowMemory, repr=False)

    @property
    def seen(self) -> dict[tuple, list[tuple[datetime | None, str, str]]]:
        return self.memory.groups

    @staticmethod
    def fingerprint(order: dict) -> str:
        """Source, customer (or receiver mobile), the lines' SKU and quantity as a multiset, the order total — as
        one text (amounts without trailing zeros, so 2 and 2.0000 are the same quantity). The columnar engine
        builds the same text from columns, so both engines share one memory."""
        lines = "\x1e".join(sorted(f"{ln.get('canonical_sku') or ''}\x1d{dec_text(ln['qty'])}"
                                    for ln in order["lines"]))
        who = order.get("customer_id") or order.get("receiver_mobile") or ""
        return f"{order.get('source_system')}\x1f{who}\x1f{lines}\x1f{dec_text(order.get('total_amount'))}"

    def check(self, order: dict) -> str | None:
        """Remember the order; return the source id of an earlier duplicate, if any."""
        return self.check_key(self.fingerprint(order), order.get("created_at"), order["order_id"],
                              order["source_order_id"])

    def check_key(self, fp: str, at: datetime | None, order_id: str, source_order_id: str) -> str | None:
        """:meth:`check` for an order given as its fingerprint, created time and ids."""
        me = (at, order_id)
        known = self.memory.groups.get(fp, ())
        if any(e[1] == order_id for e in known):
            entries = known
        else:
            entries = self.memory.add(fp, (at, order_id, source_order_id), self.window)
        # a duplicate only of an EARLIER submission (created time, then id): the same answer whatever the read order
        hit = None
        for other_at, other_id, other_src in entries:
            if other_id == order_id:
                continue
            if at is not None and other_at is not None:
                if abs(at - other_at) > self.window or (other_at, other_id) > me:
                    continue
            elif other_id > order_id:
                continue
            hit = other_src
            break
        return hit


def dec_text(d: Any) -> str:
    """A decimal as plain text without trailing zeros (``2.5000`` → ``2.5``, ``1E+2`` → ``100``, None → ``""``)."""
    if d is None:
        return ""
    s = format(d, "f") if isinstance(d, Decimal) else str(d)
    return s.rstrip("0").rstrip(".") if "." in s else s


def iter_text_fields(order: dict) -> Iterable[tuple[str, str]]:
    for k, v in order.items():
        if isinstance(v, str):
            yield k, v
    for i, ln in enumerate(order.get("lines") or ()):
        for k, v in ln.items():
            if isinstance(v, str):
                yield f"lines[{i}].{k}", v


def _decimal(v: Any) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(str(v))
