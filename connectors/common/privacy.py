"""Personal data in logs: phone numbers and addresses are masked before they are printed.

Platforms already mask receiver fields in API answers (Taobao OAID, JD/Doudian ciphertext); orderhub keeps
those values as given in the hub and masks what is left whenever text goes to a log, an artifact or a message.
"""
from __future__ import annotations

import re

_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3}-?)(\d{3,4})(\d{4})(?!\d)")


def mask_phone(value: str | None) -> str | None:
    """``13812345678`` → ``138****5678``; anything that is not a phone number keeps its last 4 characters."""
    if not value:
        return value
    s = str(value)
    m = _PHONE.fullmatch(s) or _PHONE.fullmatch(s.replace(" ", "").replace("-", "").removeprefix("+86"))
    if m:
        return f"{m.group(1)}****{m.group(3)}"
    if len(s) <= 4:
        return "*" * len(s)
    return "*" * (len(s) - 4) + s[-4:]


def mask_address(value: str | None) -> str | None:
    """Keep the first 6 characters (province/city level), mask the rest."""
    if not value:
        return value
    s = str(value)
    return s[:6] + "*" * min(8, max(0, len(s) - 6))


def mask_name(value: str | None) -> str | None:
    if not value:
        return value
    s = str(value)
    return s[0] + "*" * (len(s) - 1)


def mask_text(text: str) -> str:
    """Mask every mobile/landline number inside free text (log lines, error messages)."""
    if not text:
        return text
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
