"""Column headers of order spreadsheets → the tap's field names.

Every company names its columns its own way (订单号 / 单号 / 订单编号, 数量 / 订购数量 …). Headers are matched
after folding (NFKC, no spaces, lower case, no ``*`` marks, no unit in brackets: ``单价（元）`` → ``单价``) against
an alias list; the defaults below are extended or overridden by the ``header_aliases`` setting. Matching is
exact after folding, never "contains", so ``商品编码`` can never be taken for ``商品``.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from orderhub.connectors.common.errors import ConfigError

#: field → (kind, level). kind says how a cell is parsed; level says whether all rows of one order must agree
#: ("order": a different non-empty value on a later row is a conflicting_header error), the field belongs to the
#: line ("line"), or later rows add to it ("merge": free text is appended, a flag is true if any row says so).
FIELDS: dict[str, tuple[str, str]] = {
    "order_no": ("order_no", "order"),
    "order_date": ("time", "order"),
    "customer_code": ("code", "order"),
    "customer_name": ("text", "order"),
    "receiver_name": ("text", "order"),
    "receiver_mobile": ("phone", "order"),
    "receiver_phone": ("phone", "order"),
    "receiver_province": ("text", "order"),
    "receiver_city": ("text", "order"),
    "receiver_district": ("text", "order"),
    "receiver_address": ("text", "order"),
    "receiver_zip": ("code", "order"),
    "status": ("text", "order"),
    "salesperson": ("text", "order"),
    "warehouse": ("text", "order"),
    "delivery_date": ("time", "order"),
    "invoice_title": ("text", "order"),
    "needs_invoice": ("flag", "merge"),
    "total_amount": ("money", "order"),
    "shipping_fee": ("money", "order"),
    "discount_amount": ("money", "order"),
    "remark": ("text", "merge"),
    "urgent": ("flag", "merge"),
    "sku": ("code", "line"),
    "sku_name": ("text", "line"),
    "spec": ("text", "line"),
    "unit": ("text", "line"),
    "qty": ("qty", "line"),
    "unit_price": ("money", "line"),
    "amount": ("money", "line"),
    "is_gift": ("flag", "line"),
    "line_remark": ("text", "line"),
}

#: Chinese (and a few English) column names seen in WeChat/phone/trade-show order sheets and ERP exports.
DEFAULT_ALIASES: dict[str, list[str]] = {
    "order_no": ["订单号", "单号", "订单编号", "订单号码", "订单id", "单据编号", "单据号", "销售单号", "销售订单号",
                 "订货单号", "外部单号", "客户单号", "order_no", "orderno", "order id", "order number"],
    "order_date": ["下单日期", "日期", "下单时间", "订单日期", "订货日期", "下单日", "订单时间", "录单日期", "单据日期",
                   "order_date", "order date", "date"],
    "customer_code": ["客户编码", "客户编号", "客户代码", "客户id", "customer_code", "customer code"],
    "customer_name": ["客户", "客户名称", "客户名", "客户全称", "购货单位", "订货单位", "单位名称", "买家", "customer",
                      "customer name"],
    "receiver_name": ["收货人", "收件人", "联系人", "收货人姓名", "收货联系人", "consignee", "receiver"],
    "receiver_mobile": ["手机", "手机号", "手机号码", "收货人手机", "联系手机", "mobile"],
    "receiver_phone": ["电话", "联系电话", "收货电话", "收货人电话", "联系方式", "固话", "座机", "phone", "tel"],
    "receiver_province": ["省", "省份", "收货省份", "province"],
    "receiver_city": ["市", "城市", "收货城市", "city"],
    "receiver_district": ["区", "区县", "县区", "区/县", "县", "district"],
    "receiver_address": ["地址", "收货地址", "详细地址", "送货地址", "收件地址", "收货人地址", "address"],
    "receiver_zip": ["邮编", "邮政编码", "zip"],
    "status": ["状态", "订单状态", "status"],
    "salesperson": ["业务员", "销售员", "销售", "跟单员", "salesperson"],
    "warehouse": ["仓库", "发货仓库", "发货仓", "warehouse"],
    "delivery_date": ["交货日期", "交期", "要求到货日期", "期望到货日期", "送货日期", "delivery date"],
    "invoice_title": ["发票抬头", "开票抬头", "开票单位"],
    "needs_invoice": ["是否开票", "开票", "需要发票"],
    "total_amount": ["订单金额", "订单总额", "订单总金额", "应付金额", "应收金额", "合计金额", "total"],
    "shipping_fee": ["运费", "邮费", "快递费", "shipping"],
    "discount_amount": ["优惠", "优惠金额", "折扣金额", "discount"],
    "remark": ["备注", "订单备注", "说明", "客户备注", "留言", "买家留言", "remark", "note"],
    "urgent": ["加急", "是否加急", "急单", "紧急", "urgent"],
    "sku": ["商品编码", "物料编码", "sku", "货号", "商品编号", "物料编号", "产品编码", "产品编号", "存货编码", "料号",
            "商家编码", "规格编码", "sku code", "item code"],
    "sku_name": ["商品名称", "品名", "产品名称", "物料名称", "商品", "产品", "货品名称", "存货名称", "名称", "product",
                 "item"],
    "spec": ["规格", "型号", "规格型号", "spec"],
    "unit": ["单位", "计量单位", "unit"],
    "qty": ["数量", "订购数量", "订货数量", "下单数量", "购买数量", "销售数量", "件数", "qty", "quantity"],
    "unit_price": ["单价", "售价", "销售单价", "含税单价", "价格", "unit price", "price"],
    "amount": ["金额", "小计", "行金额", "销售金额", "含税金额", "总价", "价税合计", "amount"],
    "is_gift": ["赠品", "是否赠品", "gift"],
    "line_remark": ["行备注", "明细备注", "商品备注"],
}

#: columns that are known to carry nothing (a running row number); they are neither fields nor extras.
DEFAULT_IGNORED = ["序号", "行号", "no.", "#"]

_BRACKETED = re.compile(r"[(（\[【].*?[)）\]】]")


def fold_header(name: object) -> str:
    """The comparable form of a header cell: NFKC, lower case, no spaces, no ``*``/``:`` marks."""
    s = unicodedata.normalize("NFKC", str(name or "")).lower()
    s = re.sub(r"\s+", "", s).strip("*:：")
    return s


def _without_unit(folded: str) -> str:
    return _BRACKETED.sub("", folded).strip("*:")


def build_alias_index(overrides: dict[str, Any] | None = None,
                      ignored: list[str] | None = None) -> tuple[dict[str, str], set[str]]:
    """Return (folded header → field, folded ignored headers). ``overrides`` maps a field to extra header names;
    a name given there moves to that field even if a default alias gave it to another one (e.g. ``备注`` →
    ``line_remark`` for sheets whose remark is per line)."""
    index: dict[str, str] = {}
    for field, names in DEFAULT_ALIASES.items():
        for n in names:
            index[fold_header(n)] = field
    for field, names in (overrides or {}).items():
        if field not in FIELDS:
            raise ConfigError(f"unknown field {field!r}; known fields: {', '.join(FIELDS)}",
                              key=f"header_aliases.{field}")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError("must be a list of column names", key=f"header_aliases.{field}")
        for n in names:
            index[fold_header(n)] = field
    skip = {fold_header(n) for n in (DEFAULT_IGNORED if ignored is None else ignored)}
    return index, skip


def match_header(cell: object, index: dict[str, str]) -> str | None:
    """The field a header cell names, or None."""
    f = fold_header(cell)
    if not f:
        return None
    return index.get(f) or index.get(_without_unit(f))
