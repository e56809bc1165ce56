"""Cell values of hand-made order spreadsheets → typed values.

Everything here is pure: a cell (text from a CSV, or whatever openpyxl returns for an .xlsx cell) goes in, a
clean value comes out or :class:`BadValue` is raised with a reason code. Spreadsheets typed in a Chinese IME
carry full-width digits (``１２３``), full-width spaces, ``￥`` signs, ``1,234.50元``, dates as ``2024年5月1日``
or as Excel serial numbers, and order numbers that Excel has turned into ``1.23457E+18``; each is handled here.
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo


class BadValue(ValueError):
    """A cell could not be read. ``code`` is the reject reason code (``bad_qty``, ``bad_date``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
# ="00123" (the CSV trick that keeps leading zeros) is unwrapped by text()


def text(v: object) -> str:
    """Any cell as trimmed text ('' for empty). Full-width spaces, NBSP and zero-width characters go."""
    if v.__class__ is str:
        s = v
    elif v is None:
        return ""
    elif isinstance(v, bool):
        s = "是" if v else "否"
    elif isinstance(v, float):
        s = _float_text(v)
    elif isinstance(v, datetime):
        s = v.isoformat(sep=" ")
    else:
        s = str(v)
    if not s.isascii():
        s = s.translate(_INVISIBLE).replace("\u3000", " ").replace("\xa0", " ")
    s = s.strip()
    if s.startswith('="') and s.endswith('"') and len(s) >= 3:
        s = s[2:-1].strip()
    return s


def fold(s: str) -> str:
    """Already trimmed text with full-width letters/digits/punctuation folded to ASCII (NFKC)."""
    return s if s.isascii() else unicodedata.normalize("NFKC", s).strip()


def folded(v: object) -> str:
    """Any cell as folded text: codes, numbers, phones."""
    return fold(text(v))


def _float_text(f: float) -> str:
    if math.isfinite(f) and f == int(f) and abs(f) < 1e15:
        return str(int(f))
    return format(f, ".15g")  # Excel keeps 15 significant digits; repr() would show binary noise


# --- numbers --------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_CURRENCY = ("¥", "元", "rmb", "cny", "人民币")
_QTY_UNIT = re.compile(r"^(?P<n>[+-]?\d+(\.\d+)?)\s*(?P<unit>[\u4e00-\u9fff]{1,2}|pcs|pc|set|sets|kg|m)?$", re.I)


def decimal(v: object, code: str, label: str) -> Decimal | None:
    """A money or number cell → Decimal (None when empty). Accepts ``¥1,234.50``, ``１２.５元``, floats from
    Excel (rounded to Excel's 15 significant digits); refuses ``1e5``, ``NaN`` and words."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise BadValue(code, f"{label}: {v!r} is not a number")
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise BadValue(code, f"{label}: {v!r} is not a number")
        return Decimal(_float_text(v))
    if isinstance(v, Decimal):
        return v
    s = folded(v).lower().replace(" ", "")
    if not s:
        return None
    for sign in _CURRENCY:
        s = s.replace(sign, "")
    if _GROUPED.match(s):
        s = s.replace(",", "")
    if not _NUMBER.match(s):
        raise BadValue(code, f"{label}: {text(v)[:40]!r} is not a number")
    try:
        return Decimal(s)
    except InvalidOperation:  # pragma: no cover - the pattern above only lets numbers through
        raise BadValue(code, f"{label}: {text(v)[:40]!r} is not a number") from None


def quantity(v: object, label: str) -> tuple[Decimal | None, str | None]:
    """A quantity cell → (qty, unit written in the cell). ``10件`` → (10, '件'). Must be > 0."""
    if isinstance(v, str):
        m = _QTY_UNIT.match(folded(v).replace(" ", ""))
        if m and m.group("unit"):
            q = Decimal(m.group("n"))
            unit = m.group("unit")
        else:
            q, unit = decimal(v, "bad_qty", label), None
    else:
        q, unit = decimal(v, "bad_qty", label), None
    if q is not None and q <= 0:
        raise BadValue("bad_qty", f"{label}: {text(v)!r} must be more than 0")
    return q, unit


# --- order numbers ----------------------------------------------------------------------------------------------
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?e\+?\d+$", re.I)


def order_no(v: object, label: str) -> str | None:
    """An order number as text. A long number that Excel stored as a float (or printed as ``1.23E+18``) has
    lost digits; it is refused rather than guessed, since a wrong order number merges two customers' orders."""
    if v is None or v == "":
        return None
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v) or abs(v) >= 1e15:
            raise BadValue("bad_order_no", f"{label}: {v!r} was stored by Excel as a number and lost digits; "
                           "format the column as text and enter it again")
        return str(int(v))
    s = folded(v)
    if _SCIENTIFIC.match(s):
        raise BadValue("bad_order_no", f"{label}: {s!r} is in scientific notation (Excel turned a long number "
                       "into 1.23E+18 and lost digits); format the column as text and enter it again")
    if len(s) > 64:
        raise BadValue("bad_order_no", f"{label}: longer than 64 characters")
    return s or None


# --- dates ------------------------------------------------------------------------------------------------------
_DATE = re.compile(
    r"^(?P<y>\d{4})\s*(?:[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?|(?P<m2>\d{2})(?P<d2>\d{2}))"
    r"(?:(?:\s+|T|日)?(?P<H>\d{1,2})[:时](?P<M>\d{1,2})(?:[:分](?P<S>\d{1,2})(?:\.\d+)?秒?)?)?$"
)
_EXCEL_EPOCH = datetime(1899, 12, 30)
MIN_YEAR, MAX_YEAR = 2000, 2100


def order_time(v: object, tz: ZoneInfo, label: str) -> datetime | None:
    """A date or date-time cell → tz-aware datetime in ``tz`` (a date alone is midnight). Year first only:
    ``2024-05-01``, ``2024/5/1 14:30``, ``2024.5.1``, ``2024年5月1日``, ``20240501``, an Excel date or an Excel
    serial number. ``5/1/2024`` is refused: day and month cannot be told apart."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime.combine(v, time())
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and 20000 <= v <= 80000:
        dt = _EXCEL_EPOCH + timedelta(days=float(v))
        dt = dt.replace(microsecond=0)
    else:
        s = folded(v)
        m = _DATE.match(s)
        if not m:
            raise BadValue("bad_date", f"{label}: {text(v)[:40]!r} is not a date (write it as 2024-05-01)")
        mo, d = (m.group("m"), m.group("d")) if m.group("m") else (m.group("m2"), m.group("d2"))
        try:
            dt = datetime(int(m.group("y")), int(mo), int(d), int(m.group("H") or 0), int(m.group("M") or 0),
                          int(m.group("S") or 0))
        except ValueError:
            raise BadValue("bad_date", f"{label}: {s!r} is not a real date") from None
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise BadValue("bad_date", f"{label}: year {dt.year} is out of range")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(tz)


# --- yes/no flags -----------------------------------------------------------------------------------------------
_TRUE = {"是", "y", "yes", "true", "1", "√", "✓", "✔", "加急", "急", "急单", "特急", "紧急", "需要", "要", "有", "x", "对"}
_FALSE = {"否", "n", "no", "false", "0", "不", "不加急", "不急", "无", "不需要", "不要", "-", "—", "×", "普通", "正常"}


def flag(v: object, label: str) -> bool | None:
    """是/否, Y/N, 1/0, √, 加急 … → bool (None when empty). Anything else is refused, not guessed."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return v
    s = folded(v).lower().replace(" ", "")
    if not s:
        return None
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise BadValue("bad_flag", f"{label}: {text(v)[:20]!r} is not a yes/no value (是/否)")


def mentions(s: str | None, words: tuple[str, ...]) -> bool:
    """True when ``s`` contains one of ``words`` not negated right before (不加急, 无需加急, 非急)."""
    if not s:
        return False
    for w in words:
        start = 0
        while (i := s.find(w, start)) >= 0:
            before = s[max(0, i - 2):i]
            if not any(n in before for n in ("不", "无", "非", "勿", "别")):
                return True
            start = i + len(w)
    return False


# --- phones -----------------------------------------------------------------------------------------------------
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d(?:[- ]?\d{4}){2})(?!\d)")


def mobile_in(s: str | None) -> str | None:
    """The first mainland mobile number inside a phone cell (``+86 138-1234-5678`` → ``13812345678``)."""
    if not s:
        return None
    m = _MOBILE.search(folded(s))
    return re.sub(r"[- ]", "", m.group(1)) if m else None
