"""The hostile-input corpus: records, files and ERP rows built to break the data path, each with the outcome it
must have.

Four entry points, all real: ``record`` — Taobao-shaped trades emitted by a Singer tap (any tap may send these),
mapped by the ``taobao`` mapping; ``file`` — files in the inbox of ``tap-orderfile`` (names, links, encodings,
cells); ``erp`` — rows in the ERP's ``so_header``/``so_line`` on MariaDB read by the ``erp_sql`` reader;
``taobao`` — trades served by the TOP sandbox to ``tap-taobao``.

Every case expects one of: ``quarantine`` (a quarantine entry with one of ``codes``), ``hold`` (an order held
with one of ``codes``), ``refused`` (a target refused the order with a message, or the run refused the
configuration with a one-line error), ``intact`` (odd but valid — emoji, injection text, unknown extra fields —
and it must arrive unchanged in every target that takes it) or ``dedupe`` (several copies of one order: exactly
one in every target, with the newest content). Nothing may crash, and the valid orders mixed in with the cases
must all arrive.

``python -m orderhub.infra.faults.hostile write DIR`` writes the corpus (``cases.jsonl``; big values as
``{"$repeat": [text, n]}``, bytes as ``{"$b64": …}``), which ``tests/reliability/hostile/`` keeps.
"""
from __future__ import annotations

import base64
import copy
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SQL = ["'; DROP TABLE hub_orders; --", "1\" OR \"1\"=\"1", "x'); DELETE FROM orderhub_so_interface; --",
       "\\'; SELECT pg_sleep(30); -- 中"]
XML = ["</name></receiverInfo><deliveryOrderCode>EVIL</deliveryOrderCode>", "]]><![CDATA[<x>&amp;&lt;",
       "<!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>&e;", "<?xml version=\"1.0\"?><a b='&#60;'/>"]
PAYLOADS = [("sql", p) for p in SQL[:2]] + [("xml", p) for p in XML[:2]]
TEN_MB = 10 * 1024 * 1024
BATCH = {"$batch": True}  # in a record case: the records after it go to the next batch

# Taobao trade fields → (canonical field, what a bad value does). "text": stored as given (a hub column with a
# width: longer is quarantined as text_too_long); otherwise the reason codes a non-value must get.
HEADER_FIELDS: dict[str, tuple[str | None, tuple[str, ...] | str]] = {
    "tid_str": ("source_order_id", "text"), "type": ("order_type", "text"),
    "buyer_nick": ("customer_name", "text"), "buyer_open_uid": ("customer_id", "text"),
    "seller_memo": ("seller_memo", "text"), "buyer_message": ("special_requirements", "text"),
    "receiver_name": ("receiver_name", "text"), "receiver_state": ("receiver_province", "text"),
    "receiver_city": ("receiver_city", "text"), "receiver_district": ("receiver_district", "text"),
    "receiver_town": ("receiver_town", "text"), "receiver_address": ("receiver_address", "text"),
    "receiver_zip": ("receiver_zip", "text"), "receiver_phone": ("receiver_phone", "text"),
    "oaid": ("privacy_id", "text"),
    "status": (None, ("unknown_status",)), "receiver_mobile": (None, ("bad_phone",)),
    "invoice_kind": (None, ("wrong_type",)),
    "created": (None, ("bad_time",)), "modified": (None, ("bad_time",)), "pay_time": (None, ("bad_time",)),
    "consign_time": (None, ("bad_time",)),
    "payment": (None, ("bad_number",)), "total_fee": (None, ("bad_number",)), "post_fee": (None, ("bad_number",)),
    "discount_fee": (None, ("bad_number",)),
}
LINE_FIELDS: dict[str, tuple[str | None, tuple[str, ...] | str]] = {
    "oid_str": ("source_line_id", "text"), "outer_sku_id": ("source_sku", "text"), "title": ("sku_name", "text"),
    "status": (None, ("unknown_line_status", "unknown_status")),
    "refund_status": (None, ("unknown_refund_status",)),
    "price": (None, ("bad_number",)), "num": (None, ("bad_number",)), "divide_order_fee": (None, ("bad_number",)),
}


def hub_widths() -> dict[str, int]:
    """Text widths of the hub's columns (header and line fields), from its schema."""
    from orderhub.connectors.hub import schema

    out = {}
    for c in schema.orders.columns:
        n = getattr(c.type, "length", None)
        if n:
            out[c.name] = n
    for name, typ in schema.LINE_COLUMNS:  # the lines' widths (the hub_order_lines view's types)
        if typ.startswith("varchar("):
            out[name] = int(typ[8:-1])
    return out


@dataclass
class Case:
    id: str
    channel: str                     # record | file | erp | taobao
    category: str
    expect: str                      # quarantine | hold | refused | intact | dedupe
    codes: list[str] = field(default_factory=list)
    key: str | None = None           # the source order id the case is found by (None: by its marker)
    payload: Any = None              # record channel: list of records/raw lines; file: {name, data|symlink|…}
    check: dict[str, Any] = field(default_factory=dict)   # intact/dedupe: canonical field → value
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return _pack(asdict(self))


# ================================================================================================================
# record channel: Taobao-shaped trades from a Singer tap
# ================================================================================================================
def trade(tid: str, n: int, case: str) -> dict[str, Any]:
    """A valid trade: one line, paid, waiting to ship (→ confirmed by the default rules, sent to the WMS)."""
    return {
        "_case": case, "_shop": "hostile", "tid_str": tid, "tid": 9_100_000_000 + n, "status": "WAIT_SELLER_SEND_GOODS",
        "type": "fixed", "created": "2024-05-06 10:00:00", "modified": "2024-05-06 10:05:00",
        "pay_time": "2024-05-06 10:01:00", "payment": "59.00", "total_fee": "59.00", "post_fee": "0.00",
        "discount_fee": "0.00", "buyer_nick": f"买家{n}", "buyer_open_uid": f"AAH{n:06d}", "seller_memo": "请尽快发货",
        "buyer_message": "周五前到", "receiver_name": "张*", "receiver_state": "浙江省", "receiver_city": "杭州市",
        "receiver_district": "西湖区", "receiver_town": "文新街道", "receiver_address": "文三路**号",
        "receiver_zip": "310000", "receiver_mobile": "138****5678", "receiver_phone": "0571-****1234",
        "oaid": f"oaid{n:08d}", "invoice_kind": "1",
        "orders": {"order": [{"oid_str": f"{tid}-1", "oid": 5_000_000 + n, "status": "WAIT_SELLER_SEND_GOODS",
                              "refund_status": "NO_REFUND", "outer_sku_id": f"SKU-H{n % 7}", "title": "六角螺栓 M8",
                              "price": "29.50", "num": 2, "total_fee": "59.00", "payment": "59.00",
                              "divide_order_fee": "59.00"}]},
    }


class _Ids:
    def __init__(self, prefix: str) -> None:
        self.prefix, self.n = prefix, 0

    def next(self) -> tuple[str, int]:
        self.n += 1
        return f"{self.prefix}{self.n:04d}", self.n


def record_cases() -> list[Case]:
    ids = _Ids("R")
    widths = hub_widths()
    out: list[Case] = []

    def case(category: str, expect: str, mutate: Any = None, *, codes: tuple[str, ...] = (), check: dict | None = None,
             records: list | None = None, note: str = "", key_from: str | None = None) -> None:
        cid, n = ids.next()
        t = trade(cid, n, cid)
        if mutate is not None:
            mutate(t)
        payload = records(t, cid, n) if callable(records) else [t]
        key = t.get("tid_str") if isinstance(t, dict) and key_from is None else key_from
        out.append(Case(cid, "record", category, expect, list(codes), key, payload, check or {}, note))

    def line(t: dict) -> dict:
        return t["orders"]["order"][0]

    # --- injection text in every string field -----------------------------------------------------------------
    for where, fields in (("header", HEADER_FIELDS), ("line", LINE_FIELDS)):
        for fname, (canon, kind) in fields.items():
            for family, text in PAYLOADS:
                cat = f"{family}_injection"

                def put(t: dict, fname: str = fname, text: str = text, where: str = where) -> None:
                    if fname == "tid_str":
                        text = f"{text}#{t['_case']}"   # ids must stay unique per case
                        t["orders"]["order"][0]["oid_str"] = t["_case"] + "-1"
                    (t if where == "header" else line(t))[fname] = text
                    if fname == "tid_str":
                        t["tid_str"] = text

                value = f"{text}#R{ids.n + 1:04d}" if fname == "tid_str" else text
                if kind == "text":
                    width = widths.get(canon or "", 10**9)
                    if len(value) > width:
                        case(cat, "quarantine", put, codes=("text_too_long",), note=f"{canon} takes {width}")
                    else:
                        case(cat, "intact", put, check={(canon if where == "header" else f"lines.{canon}"): value})
                else:  # a value that long is refused for its length first
                    case(cat, "quarantine", put, codes=(*kind, "text_too_long"))

    # --- missing fields ---------------------------------------------------------------------------------------
    def drop(*keys: str, in_line: bool = False):  # noqa: ANN202
        def m(t: dict) -> None:
            for k in keys:
                (line(t) if in_line else t).pop(k, None)
        return m

    case("missing_field", "quarantine", drop("tid_str", "tid"), codes=("missing_id",), key_from="")
    case("missing_field", "quarantine", drop("status"), codes=("unknown_status", "missing_status", "missing_field"))
    case("missing_field", "quarantine", drop("orders"), codes=("no_lines",))
    case("missing_field", "quarantine", lambda t: t["orders"].update(order=[]), codes=("no_lines",))
    case("missing_field", "quarantine", drop("num", in_line=True), codes=("bad_qty",))
    case("missing_field", "hold", drop("receiver_address"), codes=("missing_field",))
    case("missing_field", "refused", drop("created", "pay_time"), note="the WMS needs a create time")
    case("missing_field", "refused", drop("receiver_mobile", "receiver_phone", "oaid"),
         note="the WMS needs a phone or OAID")
    case("missing_field", "intact", drop("payment"), check={"total_amount": "59.00"})
    # --- extra fields -----------------------------------------------------------------------------------------
    case("extra_field", "intact", lambda t: t.update(evil={"$where": "1==1", "__proto__": {"admin": True}}),
         check={"seller_memo": "请尽快发货"})
    case("extra_field", "intact", lambda t: line(t).update(unknown_line_field="x" * 200), check={"lines.qty": "2"})
    case("extra_field", "intact", lambda t: t.update({f"extra_{i}": i for i in range(500)}),
         check={"seller_memo": "请尽快发货"})

    def nested(t: dict) -> None:
        deep: Any = "bottom"
        for _ in range(200):
            deep = {"d": deep}
        t["deep"] = deep

    case("extra_field", "intact", nested, check={"seller_memo": "请尽快发货"})
    # --- wrong types ------------------------------------------------------------------------------------------
    case("wrong_type", "quarantine", lambda t: line(t).update(num="abc"), codes=("bad_number",))
    case("wrong_type", "quarantine", lambda t: line(t).update(num=[1]), codes=("wrong_type",))
    case("wrong_type", "quarantine", lambda t: t.update(payment={"a": 1}), codes=("wrong_type",))
    case("wrong_type", "quarantine", lambda t: t.update(status=42), codes=("unknown_status",))
    case("wrong_type", "quarantine", lambda t: t["orders"].update(order="not a list"), codes=("no_lines",))
    case("wrong_type", "quarantine", lambda t: t["orders"].update(order=["a line as text"]), codes=("wrong_type",))
    case("wrong_type", "quarantine", lambda t: t.update(created=1715000000), codes=("wrong_type", "bad_time"))
    case("wrong_type", "quarantine", lambda t: t.update(receiver_address=["a", "b"]), codes=("wrong_type",))
    case("wrong_type", "intact", lambda t: t.update(buyer_nick=12345), check={"customer_name": "12345"})
    case("wrong_type", "quarantine", records=lambda t, cid, n: [[cid, "an array, not an object"]],
         codes=("wrong_type",), key_from="")
    case("wrong_type", "quarantine", records=lambda t, cid, n: [cid], codes=("wrong_type",), key_from="",
         note="a JSON string where an object belongs")
    # --- overflowing numbers ----------------------------------------------------------------------------------
    case("overflow", "quarantine", lambda t: line(t).update(num="1e30"), codes=("number_out_of_range",))
    case("overflow", "quarantine", lambda t: t.update(payment="9" * 40), codes=("number_out_of_range",))
    case("overflow", "quarantine", lambda t: line(t).update(price=1e308), codes=("number_out_of_range",))
    case("overflow", "quarantine", lambda t: line(t).update(num=2 ** 70), codes=("number_out_of_range",))
    case("overflow", "quarantine", lambda t: t.update(payment="NaN"), codes=("number_out_of_range", "bad_number"))
    case("overflow", "quarantine", lambda t: t.update(payment="-Infinity"),
         codes=("number_out_of_range", "bad_number"))
    case("overflow", "quarantine", records=lambda t, cid, n: [_raw_line(t).replace(b'"payment":"59.00"',
                                                                                   b'"payment":NaN')],
         codes=("number_out_of_range", "bad_number"))
    case("overflow", "refused", lambda t: line(t).update(num="1.5", total_fee="44.25", payment="44.25",
                                                         divide_order_fee="44.25"),
         note="QIMEN planQty is a whole number")
    # --- negative and zero quantities, prices -----------------------------------------------------------------
    case("quantity", "quarantine", lambda t: line(t).update(num=0), codes=("bad_qty",))
    case("quantity", "quarantine", lambda t: line(t).update(num=-2), codes=("bad_qty",))
    case("quantity", "quarantine", lambda t: line(t).update(price="-29.50"), codes=("negative_amount",))
    case("quantity", "quarantine", lambda t: t.update(payment="-1"), codes=("negative_amount",))
    case("quantity", "hold", lambda t: line(t).update(price="0", divide_order_fee="0", payment="0"),
         codes=("price_too_low",))
    # --- amounts that do not add up ---------------------------------------------------------------------------
    case("amounts", "hold", lambda t: line(t).update(divide_order_fee="5900.00"), codes=("amount_mismatch",))
    case("amounts", "hold", lambda t: line(t).update(price="2950.00"), codes=("amount_mismatch",))
    case("amounts", "intact", lambda t: t.update(payment="1.00"), check={"total_amount": "1.00"},
         note="order total ≠ goods + post − discount: the default rule set does not check it (check_order_total)")
    # --- unknown statuses -------------------------------------------------------------------------------------
    case("status", "quarantine", lambda t: t.update(status="WAIT_MARS_DELIVERY"), codes=("unknown_status",))
    case("status", "quarantine", lambda t: t.update(status=""), codes=("unknown_status", "missing_status"))
    case("status", "quarantine", lambda t: line(t).update(status="???"),
         codes=("unknown_line_status", "unknown_status"))
    case("status", "quarantine", lambda t: line(t).update(refund_status="MAYBE"), codes=("unknown_refund_status",))
    # --- duplicate ids within and across batches -----------------------------------------------------------------

    def twice(t: dict, cid: str, n: int) -> list:
        return [t, copy.deepcopy(t)]

    def newer(t: dict, cid: str, n: int) -> list:
        t2 = copy.deepcopy(t)
        t2.update(modified="2024-05-06 11:00:00", seller_memo="第二版")
        return [t, t2]

    def older(t: dict, cid: str, n: int) -> list:
        t2 = copy.deepcopy(t)
        t2.update(modified="2024-05-06 09:00:00", seller_memo="旧版本")
        return [t, BATCH, t2]

    def later_batch(t: dict, cid: str, n: int) -> list:
        t2 = copy.deepcopy(t)
        t2.update(modified="2024-05-06 12:00:00", seller_memo="下一批")
        return [t, BATCH, t2]

    case("duplicate", "dedupe", records=twice, check={"seller_memo": "请尽快发货"})
    case("duplicate", "dedupe", records=newer, check={"seller_memo": "第二版"})
    case("duplicate", "dedupe", records=later_batch, check={"seller_memo": "下一批"})
    case("duplicate", "dedupe", records=older, check={"seller_memo": "请尽快发货"}, note="a late older copy is stale")

    def same_content(t: dict, cid: str, n: int) -> list:
        t2 = copy.deepcopy(t)
        t2.update(tid_str=f"{cid}-copy", tid=t["tid"] + 1, created="2024-05-06 10:03:00")
        t2["orders"]["order"][0]["oid_str"] = f"{cid}-copy-1"
        return [t, t2]

    cid_next = f"R{ids.n + 1:04d}"
    case("duplicate", "hold", records=same_content, codes=("duplicate_submission",), key_from=f"{cid_next}-copy",
         note="same buyer, lines and amount 3 minutes apart: 重复下单")
    case("duplicate", "intact", lambda t: t["orders"]["order"].append(dict(line(t))),
         check={"lines.count": 2, "total_amount": "59.00"}, note="the same line id twice: two lines")
    # --- timestamps -------------------------------------------------------------------------------------------
    case("time", "quarantine", lambda t: t.update(created="2199-01-01 00:00:00"), codes=("implausible_time",))
    case("time", "quarantine", lambda t: t.update(modified="1970-01-01 08:00:00"), codes=("implausible_time",))
    case("time", "quarantine", lambda t: t.update(created="0000-00-00 00:00:00"), codes=("bad_time",))
    case("time", "quarantine", lambda t: t.update(created="2024-02-30 10:00:00"), codes=("bad_time",))
    case("time", "quarantine", lambda t: t.update(created="06/05/2024"), codes=("bad_time",))
    case("time", "intact", lambda t: t.update(created="2024-05-06T02:00:00Z"),
         check={"created_at": "2024-05-06T02:00:00+00:00"}, note="an explicit zone wins over the source's")
    case("time", "intact", lambda t: t.update(created="2024-05-06T07:00:00+05:00"),
         check={"created_at": "2024-05-06T02:00:00+00:00"})
    case("time", "intact", lambda t: t.update(created="2024-05-06 10:00"),
         check={"created_at": "2024-05-06T02:00:00+00:00"}, note="no zone, no seconds: Shanghai time")
    # --- encodings --------------------------------------------------------------------------------------------
    case("encoding", "quarantine", lambda t: t.update(buyer_message="坏\udcff字节"), codes=("invalid_text",))
    case("encoding", "quarantine", lambda t: t.update(seller_memo="NUL\u0000here"), codes=("invalid_text",))
    case("encoding", "quarantine", records=lambda t, cid, n: [_raw_line(t).replace("请尽快发货".encode(),
                                                                                   b"\xff\xfe\xfd")],
         codes=("bad_message",), key_from="", note="a line that is not UTF-8")
    case("encoding", "quarantine", records=lambda t, cid, n: [json.dumps(t, ensure_ascii=False).encode("gbk")],
         codes=("bad_message",), key_from="", note="a whole line in GBK")
    case("encoding", "quarantine", records=lambda t, cid, n: [_raw_line(t)[:-40]],
         codes=("bad_message",), key_from="", note="a truncated line (not JSON)")
    case("encoding", "intact", lambda t: t.update(seller_memo="请尽快发货".encode().decode("latin-1")),
         check={"seller_memo": "请尽快发货".encode().decode("latin-1")}, note="mojibake is text")
    case("encoding", "intact", lambda t: t.update(buyer_nick="\ufeff买家"), check={"customer_name": "\ufeff买家"})
    case("encoding", "intact", lambda t: t.update(seller_memo="\u202egnp.exe\u200b"),
         check={"seller_memo": "\u202egnp.exe\u200b"})
    case("encoding", "intact", lambda t: t.update(seller_memo="bell\x07tab\tcr\r"),
         check={"seller_memo": "bell\x07tab\tcr\r"}, note="the WMS gets it without the characters XML 1.0 forbids")
    # --- emoji ------------------------------------------------------------------------------------------------
    case("emoji", "intact", lambda t: t.update(buyer_message="🚚📦✅ 尽快"), check={"special_requirements": "🚚📦✅ 尽快"})
    case("emoji", "intact", lambda t: t.update(receiver_name="王🐉"), check={"receiver_name": "王🐉"})
    case("emoji", "intact", lambda t: line(t).update(title="螺栓👍🏽 𠀀𪚥"), check={"lines.sku_name": "螺栓👍🏽 𠀀𪚥"})
    case("emoji", "intact", lambda t: t.update(seller_memo="👨‍👩‍👧‍👦" * 50), check={"seller_memo": "👨‍👩‍👧‍👦" * 50})
    # --- huge values ------------------------------------------------------------------------------------------
    case("huge", "quarantine", lambda t: t.update(buyer_message={"$repeat": ["留言", TEN_MB // 2]}),
         codes=("text_too_long",), note="10 MB")
    case("huge", "quarantine", lambda t: line(t).update(title={"$repeat": ["x", TEN_MB]}), codes=("text_too_long",))
    case("huge", "quarantine", lambda t: t.update(seller_memo={"$repeat": ["m", 4001]}), codes=("text_too_long",))
    case("huge", "quarantine", lambda t: t.update(tid_str="T" * 300), codes=("text_too_long",), key_from="")
    case("huge", "quarantine", lambda t: t["orders"].update(order={"$repeat": [[line(t)], 5001]}),
         codes=("too_many_lines",))
    return [c for c in out if c is not None]


def _raw_line(t: dict) -> bytes:
    return json.dumps(t, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def controls(n: int) -> list[dict]:
    """Valid orders mixed in with the cases: all of them must arrive."""
    return [trade(f"OK{i:04d}", 50_000 + i, f"OK{i:04d}") for i in range(n)]


# ================================================================================================================
# file channel: tap-orderfile's inbox
# ================================================================================================================
CSV_HEADER = "订单号,下单日期,客户名称,收货人,手机,收货地址,商品编码,商品名称,数量,单价,金额,备注\n"


def csv_row(no: str, **over: str) -> str:
    v = {"date": "2024-05-06", "customer": f"义乌小商品批发部 {no}", "name": "陈明", "mobile": "13957990001",
         "address": "浙江省金华市义乌市福田路8号", "sku": "JG-W10", "item": "平垫圈", "qty": "100", "price": "0.50",
         "amount": "50.00", "remark": "", **over}

    def q(s: str) -> str:
        return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n\r') else s

    return ",".join(q(v[k]) for k in ("date", "customer", "name", "mobile", "address", "sku", "item", "qty",
                                      "price", "amount", "remark")).join([q(no) + ",", "\n"])


def file_cases() -> list[Case]:
    ids = _Ids("F")
    out: list[Case] = []

    def case(category: str, expect: str, payload: dict, *, codes: tuple[str, ...] = (), key: str | None = None,
             check: dict | None = None, note: str = "") -> None:
        cid, _ = ids.next()
        payload = {k: (v.replace("{id}", cid) if isinstance(v, str) else
                       v.replace(b"{id}", cid.encode()) if isinstance(v, bytes) else v) for k, v in payload.items()}
        payload["name"] = payload.get("name", f"{cid}.csv").replace("{id}", cid)
        if key:
            key = key.replace("{id}", cid)
        out.append(Case(cid, "file", category, expect, list(codes), key, payload, check or {}, note))

    def text(*rows: str) -> str:
        return CSV_HEADER + "".join(rows)

    ok = "{id}-1"
    # path traversal and odd names
    case("path_traversal", "quarantine", {"name": "{id}-link.csv", "symlink": "../outside/secret.csv"},
         codes=("outside_folder",))
    case("path_traversal", "quarantine", {"name": "{id}-passwd.csv", "symlink": "/etc/passwd"},
         codes=("outside_folder",))
    case("path_traversal", "intact", {"name": "in\\..\\..\\{id}-windows.csv", "text": text(csv_row(ok))}, key=ok,
         check={"receiver_name": "陈明"}, note="backslashes are just characters in a Linux file name")
    case("path_traversal", "intact", {"name": "%2e%2e%2f{id}.csv", "text": text(csv_row(ok))}, key=ok,
         check={"receiver_name": "陈明"})
    case("path_traversal", "intact", {"name": "{id}\nline-break.csv", "text": text(csv_row(ok))}, key=ok,
         check={"receiver_name": "陈明"})
    case("path_traversal", "refused", {"glob": ["../*.csv"]}, codes=("config_invalid",), note="glob with ..")
    case("path_traversal", "refused", {"glob": ["/etc/*.csv"]}, codes=("config_invalid",), note="absolute glob")
    case("path_traversal", "refused", {"glob": ["**/../../*.csv"]}, codes=("config_invalid",))
    case("path_traversal", "quarantine", {"name": "{id}-fifo.csv", "fifo": True}, codes=("unreadable_file",),
         note="a named pipe must not hang the tap")
    # encodings and broken files
    case("encoding", "quarantine", {"data": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8},
         codes=("bad_encoding", "bad_csv", "no_header_row"))
    case("encoding", "quarantine", {"text": text(csv_row(ok)), "append": b"\xff\xfe\x00\x81"},
         codes=("bad_encoding", "bad_csv", "no_header_row"))
    case("encoding", "quarantine", {"text": text(csv_row(ok, remark="中文备注")), "encoding": "utf-8",
                                    "append": csv_row("{id}-2", remark="中文备注").encode("gbk")},
         codes=("bad_encoding", "bad_csv"), note="UTF-8 rows, then GBK rows")
    case("encoding", "intact", {"text": text(csv_row(ok, remark="急件")), "encoding": "gbk"}, key=ok,
         check={"receiver_name": "陈明"}, note="GBK, as Excel saves it on Chinese Windows")
    case("encoding", "quarantine", {"data": b"", "name": "{id}-empty.csv"}, codes=("no_header_row",))
    case("encoding", "quarantine", {"data": b"PK\x03\x04 not really a zip", "name": "{id}.xlsx"},
         codes=("unreadable_file",))
    case("huge", "quarantine", {"big_remark": 2 * 1024 * 1024, "fill": "长"}, key=ok, codes=("bad_csv",),
         note="a 6 MB cell (the limit is 1 MiB)")
    case("huge", "quarantine", {"big_remark": TEN_MB, "fill": "x"}, key=ok, codes=("bad_csv",),
         note="a 10 MB cell")
    # injection and odd text in cells
    for family, p in PAYLOADS[:3]:
        case(f"{family}_injection", "intact", {"text": text(csv_row(ok, remark=p, customer=p[:60]))}, key=ok,
             check={"special_requirements": p, "customer_name": p[:60]})
    case("xml_injection", "intact", {"text": text(csv_row(ok, item=XML[0]))}, key=ok,
         check={"lines.sku_name": XML[0]})
    case("emoji", "intact", {"text": text(csv_row(ok, name="王🐉", remark="🚚📦"))}, key=ok,
         check={"receiver_name": "王🐉", "special_requirements": "🚚📦"})
    case("formula", "intact", {"text": text(csv_row(ok, remark='=HYPERLINK("http://evil.example","点我")'))},
         key=ok, check={"special_requirements": '=HYPERLINK("http://evil.example","点我")'})
    # bad rows
    case("quantity", "quarantine", {"text": text(csv_row(ok, qty="-5", amount="-2.50"))}, codes=("bad_qty",))
    case("quantity", "quarantine", {"text": text(csv_row(ok, qty="0", amount="0"))}, codes=("bad_qty",))
    case("overflow", "quarantine", {"text": text(csv_row(ok, qty="1e20", amount="5e19"))},
         codes=("bad_qty", "number_out_of_range", "bad_amount", "amount_mismatch"))
    case("amounts", "quarantine", {"text": text(csv_row(ok, amount="5000.00"))}, codes=("amount_mismatch",))
    case("time", "quarantine", {"text": text(csv_row(ok, date="2199-01-01"))},
         codes=("implausible_time", "bad_date"))
    case("time", "quarantine", {"text": text(csv_row(ok, date="1970-01-01"))},
         codes=("implausible_time", "bad_date"))
    case("time", "quarantine", {"text": text(csv_row(ok, date="5/6/2024"))}, codes=("bad_date",))
    case("duplicate", "dedupe", {"text": text(csv_row(ok), csv_row(ok, sku="JG-N8", item="螺母"))}, key=ok,
         check={"lines.count": 2}, note="two rows of one order number make one order with two lines")
    return out


# ================================================================================================================
# ERP channel: rows in so_header / so_line on MariaDB
# ================================================================================================================
def erp_cases() -> list[Case]:
    ids = _Ids("E")
    out: list[Case] = []

    def case(category: str, expect: str, header: dict, lines: list[dict] | None = None, *,
             codes: tuple[str, ...] = (), check: dict | None = None, note: str = "", key: str | None = "") -> None:
        cid, n = ids.next()
        h = {"bill_no": f"HS{cid}", "customer_code": f"HC{n:04d}", "customer_name": f"客户{n}", "status": "B",
             "remark": "", "receiver_name": f"收货人{n}", "receiver_phone": f"137{n:08d}",
             "receiver_address": f"江苏省苏州市工业园区星湖街{n}号", "order_date": "2024-05-06 10:00:00", **header}
        ls = lines if lines is not None else [{"sku": f"SKU-E{n}", "sku_name": "轴承", "qty": "3", "price": "8.50",
                                               "amount": "25.50"}]
        out.append(Case(cid, "erp", category, expect, list(codes), h["bill_no"] if key == "" else key,
                        {"header": h, "lines": ls}, check or {}, note))

    for family, p in PAYLOADS:
        case(f"{family}_injection", "intact", {"customer_name": p, "remark": p, "receiver_name": p[:60]},
             check={"customer_name": p, "special_requirements": p, "receiver_name": p[:60]})
        case(f"{family}_injection", "intact", {}, [{"sku": p[:60], "sku_name": p, "qty": "1", "price": "2.00",
                                                    "amount": "2.00"}],
             check={"lines.source_sku": p[:60], "lines.sku_name": p})
    case("sql_injection", "intact", {"bill_no": "HS'; DROP TABLE so_line; --"}, key="HS'; DROP TABLE so_line; --",
         check={"source_order_id": "HS'; DROP TABLE so_line; --"})
    case("emoji", "intact", {"remark": "加急🚚", "receiver_name": "李🐼"},
         check={"special_requirements": "加急🚚", "receiver_name": "李🐼"})
    case("status", "quarantine", {"status": "Q"}, codes=("unknown_status",))
    case("quantity", "quarantine", {}, [{"sku": "S", "sku_name": "n", "qty": "0", "price": "1", "amount": "0"}],
         codes=("bad_qty",))
    case("quantity", "quarantine", {}, [{"sku": "S", "sku_name": "n", "qty": "-3", "price": "1", "amount": "-3"}],
         codes=("bad_qty", "negative_amount"))
    case("quantity", "quarantine", {}, [{"sku": "S", "sku_name": "n", "qty": "2", "price": "-1", "amount": "-2"}],
         codes=("negative_amount",))
    case("missing_field", "quarantine", {}, [], codes=("no_lines",), note="a header without lines")
    case("missing_field", "quarantine", {"bill_no": ""}, codes=("missing_id",), key=None)
    case("missing_field", "quarantine", {"receiver_phone": "not a phone"}, codes=("bad_phone",))
    case("huge", "quarantine", {"remark": {"$repeat": ["长", 20000]}}, codes=("text_too_long",),
         note="60 KB in a TEXT column")
    case("time", "quarantine", {"order_date": "2199-01-01 00:00:00"}, codes=("implausible_time",))
    case("time", "quarantine", {"order_date": "1970-01-02 00:00:00"}, codes=("implausible_time",))
    case("duplicate", "dedupe", {"bill_no": "HS-DUP"}, key="HS-DUP", check={"lines.count": 1},
         note="two header rows with one bill number (ids differ): one order")
    out[-1].payload["twin"] = True
    return out


# ================================================================================================================
# Taobao channel: trades served by the TOP sandbox
# ================================================================================================================
def taobao_cases() -> list[Case]:
    ids = _Ids("T")
    out: list[Case] = []

    def case(category: str, expect: str, fields: dict, *, codes: tuple[str, ...] = (), check: dict | None = None,
             note: str = "") -> None:
        cid, _ = ids.next()
        out.append(Case(cid, "taobao", category, expect, list(codes), None, fields, check or {}, note))

    case("sql_injection", "intact", {"seller_memo": SQL[0], "receiver_address": SQL[2]},
         check={"seller_memo": SQL[0], "receiver_address": SQL[2]})
    case("xml_injection", "intact", {"seller_memo": XML[0], "receiver_name": XML[1][:60]},
         check={"seller_memo": XML[0], "receiver_name": XML[1][:60]})
    case("emoji", "intact", {"seller_memo": "🚚 加急📦"}, check={"seller_memo": "🚚 加急📦"})
    case("status", "quarantine", {"status": "WAIT_MARS_DELIVERY"}, codes=("unknown_status",))
    case("huge", "quarantine", {"buyer_message": {"$repeat": ["留", TEN_MB // 3]}, "has_buyer_message": True},
         codes=("text_too_long",), note="10 MB 买家留言 from trade.fullinfo.get")
    case("missing_field", "quarantine", {"orders": {"order": []}}, codes=("no_lines",))
    return out


def cases() -> list[Case]:
    """The whole corpus, in a stable order."""
    return record_cases() + file_cases() + erp_cases() + taobao_cases()


# ================================================================================================================
# storage: big values and bytes packed, so the corpus file stays small and exact
# ================================================================================================================
def _pack(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$b64": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {k: _pack(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_pack(x) for x in v]
    return v


def expand(v: Any) -> Any:
    """Undo the packing: ``{"$repeat": [s, n]}`` → s * n, ``{"$b64": …}`` → bytes."""
    if isinstance(v, dict):
        if set(v) == {"$repeat"}:
            s, n = v["$repeat"]
            return s * n
        if set(v) == {"$b64"}:
            return base64.b64decode(v["$b64"])
        return {k: expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expand(x) for x in v]
    return v


def write(folder: str | Path) -> Path:
    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    out = p / "cases.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        for c in cases():
            line = json.dumps(c.as_json(), ensure_ascii=False, sort_keys=True)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (the invalid-UTF-8 cases) only exists as an escape
                line = json.dumps(c.as_json(), ensure_ascii=True, sort_keys=True)
            fh.write(line + "\n")
    return out


def load(folder: str | Path) -> list[Case]:
    """The corpus as written by :func:`write` (values still packed; :func:`expand` when used)."""
    out = []
    for line in (Path(folder) / "cases.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Case(**json.loads(line)))
    return out


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3 or sys.argv[1] != "write":
        print("usage: python -m orderhub.infra.faults.hostile write DIR", file=sys.stderr)
        sys.exit(2)
    print(write(sys.argv[2]))
