"""Value conversions used by compiled mappings. Each raises a :class:`RecordError` naming the field."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from orderhub.connectors.common.errors import RecordError

D = Decimal
DT = datetime
_CENT = Decimal("0.01")
_EMPTY = (None, "")
MAX_DECIMAL = Decimal("1e14")  # the hub keeps amounts and quantities as NUMERIC(18,4): 14 digits before the point
_ZERO_DATE = re.compile(r"^0000-00-00")


def empty(v: object) -> bool:
    return v is None or v == "" or v == [] or v == {}


def first(*vals):  # noqa: ANN001, ANN201
    for v in vals:
        if not empty(v):
            return v
    return None


def path(r: object, keys: tuple) -> object:
    for k in keys:
        if r is None:
            return None
        if isinstance(r, dict):
            r = r.get(k)
        elif isinstance(r, (list, tuple)):
            try:
                r = r[int(k)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return r


def first_path(r: object, paths: tuple) -> object:
    for p in paths:
        v = path(r, p)
        if not empty(v):
            return v
    return None


def to_str(v: object, field: str) -> str | None:
    if v is None or v == "":
        return None
    if v.__class__ is str:
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("is not valid UTF-8 text", code="invalid_text", field=field) from None
    if isinstance(v, (dict, list)):
        raise RecordError(f"expected text, got {type(v).__name__}", code="wrong_type", field=field)
    return str(v)


def to_str_limited(v: object, field: str, limit: int) -> str | None:
    """:func:`to_str`, and at most ``limit`` characters (the hub's column width) or ``text_too_long``."""
    s = to_str(v, field)
    if s is not None and len(s) > limit:
        raise RecordError(f"is {len(s)} characters long (limit {limit})", code="text_too_long", field=field)
    return s


def to_decimal(v: object, field: str) -> Decimal | None:
    if v is None or v == "":
        return None
    if v.__class__ is Decimal:
        d = v
    elif isinstance(v, bool):
        raise RecordError(f"expected a number, got {v!r}", code="wrong_type", field=field)
    elif isinstance(v, int):
        d = Decimal(v)
    elif isinstance(v, float):
        d = Decimal(repr(v))
    elif isinstance(v, str):
        try:
            d = Decimal(v.strip().replace(",", ""))
        except InvalidOperation:
            raise RecordError(f"{v[:40]!r} is not a number", code="bad_number", field=field) from None
    elif isinstance(v, Decimal):
        d = v
    else:
        raise RecordError(f"expected a number, got {type(v).__name__}", code="wrong_type", field=field)
    if not d.is_finite() or abs(d) >= MAX_DECIMAL:
        raise RecordError(f"{d} is out of range", code="number_out_of_range", field=field)
    return d


def to_money(v: object, field: str) -> Decimal | None:
    return to_decimal(v, field)


def fen_to_yuan(v: object, field: str) -> Decimal | None:
    d = to_decimal(v, field)
    return None if d is None else d.scaleb(-2)


def to_int(v: object, field: str) -> int | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise RecordError(f"expected an integer, got {v!r}", code="wrong_type", field=field)
    if isinstance(v, int):
        return v
    try:
        d = Decimal(str(v).strip())
        if d != d.to_integral_value():
            raise InvalidOperation
        return int(d)
    except (InvalidOperation, ValueError):
        raise RecordError(f"{str(v)[:40]!r} is not an integer", code="bad_number", field=field) from None


_TRUE = {"1", "true", "t", "y", "yes", "是", "加急", "on"}
_FALSE = {"0", "false", "f", "n", "no", "否", "off", ""}


def to_bool(v: object, field: str) -> bool | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, Decimal)):
        return v != 0
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise RecordError(f"{str(v)[:40]!r} is not a yes/no value", code="wrong_type", field=field)


def contains(v: object, words: tuple[str, ...]) -> bool:
    if not v:
        return False
    s = v if isinstance(v, str) else str(v)
    return any(w in s for w in words)


_TZ_CACHE: dict[str, ZoneInfo] = {}


def zone(name: str) -> ZoneInfo:
    z = _TZ_CACHE.get(name)
    if z is None:
        z = _TZ_CACHE[name] = ZoneInfo(name)
    return z


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_TIME = datetime(1990, 1, 1, tzinfo=timezone.utc)


def to_time(v: object, field: str, fmt: str | None, tz: ZoneInfo) -> datetime | None:
    """Parse a time; naive values are in the source's time zone ``tz``. Zero dates are a record error."""
    if v is None or v == "":
        return None
    try:
        if isinstance(v, datetime):
            dt = v
        elif fmt in ("epoch_s", "epoch_ms"):
            n = to_decimal(v, field)
            secs = float(n) / (1000 if fmt == "epoch_ms" else 1)
            dt = _EPOCH + timedelta(seconds=secs)
        elif isinstance(v, str):
            s = v.strip()
            if _ZERO_DATE.match(s):
                raise RecordError(f"zero date {s!r}", code="bad_time", field=field)
            if fmt and fmt != "iso":
                dt = datetime.strptime(s, fmt)
            else:
                dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
        elif hasattr(v, "year") and hasattr(v, "month"):  # a date
            dt = datetime(v.year, v.month, v.day)  # type: ignore[attr-defined]
        else:
            raise RecordError(f"expected a time, got {type(v).__name__}", code="wrong_type", field=field)
    except RecordError:
        raise
    except (ValueError, OverflowError, ArithmeticError):
        raise RecordError(f"{str(v)[:40]!r} is not a valid time (format {fmt or 'iso'})", code="bad_time",
                          field=field) from None
    if dt.tzinfo is None:
        dt = datetime.combine(dt, dt.time(), tz)  # the zone attached in C: replace(tzinfo=) is 6× slower
    return dt


def naive_time(v: datetime, tz: ZoneInfo) -> datetime:
    return datetime.combine(v, v.time(), tz) if v.tzinfo is None else v


def map_value(v: object, table: dict, strict: bool, field: str) -> object:
    if v is None:
        return table.get("", None) if "" in table else None
    key = v if isinstance(v, str) else str(v)
    if key in table:
        return table[key]
    if strict:
        raise RecordError(f"unknown value {key[:40]!r}", code="unknown_value", field=field)
    return v


def concat(vals: tuple, sep: str) -> str | None:
    parts = [str(x) for x in vals if not empty(x)]
    return sep.join(parts) if parts else None


def default(v: object, d: object) -> object:
    return d if v is None or v == "" else v
