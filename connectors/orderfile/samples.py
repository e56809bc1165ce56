"""Example order files as they arrive from sales staff: a GBK CSV exported by Excel on Chinese Windows, a
UTF-8-with-BOM CSV from WPS, and an .xlsx from a trade show — each with a title row, Chinese headers and orders
spread over several rows. Used by the README example, the tests and the demo.

    python -m orderhub.connectors.orderfile.samples ./inbox
"""
from __future__ import annotations

import csv
import sys
from datetime import datetime
from pathlib import Path

WECHAT_GBK = [  # 3 orders, 5 lines; 合计 row at the end
    ["杭州精工机械有限公司 微信订单汇总（2024年5月6日）"],
    [],
    ["序号", "订单号", "下单日期", "客户名称", "收货人", "手机", "收货地址", "商品编码", "商品名称", "规格", "数量",
     "单价（元）", "金额", "备注", "加急"],
    ["1", "WX240506001", "2024/5/6", "宁波恒达五金", "王建国", "13812345678", "浙江省宁波市鄞州区天童南路588号",
     "JG-M8-50", "六角螺栓 M8×50", "镀锌", "２００", "0.35", "70.00", "", ""],
    ["2", "WX240506001", "2024/5/6", "宁波恒达五金", "王建国", "13812345678", "浙江省宁波市鄞州区天童南路588号",
     "JG-N8", "六角螺母 M8", "镀锌", "200", "0.12", "24.00", "", ""],
    ["3", "WX240506002", "2024年5月6日", "温州东方阀门厂", "李秀英", "0577-86861234", "浙江省温州市龙湾区永强大道1号",
     "JG-B6204", "深沟球轴承 6204", "", "50", "8.50", "425.00", "周五前必须到", "是"],
    ["4", "WX240506003", "2024-05-06 15:20", "义乌市小商品批发部", "陈明", "139 5799 0001", "浙江省金华市义乌市福田路8号",
     "JG-W10", "平垫圈 Φ10", "", "1,000", "0.05", "50.00", "请开专票", ""],
    ["5", "WX240506003", "", "", "", "", "", "JG-S4-20", "十字自攻螺丝 4×20", "黑色", "500", "0.08", "40.00",
     "", ""],
    ["6", "WX240506003", "", "", "", "", "", "JG-M8-50", "六角螺栓 M8×50", "镀锌", "100", "0.35", "35.00", "加急",
     ""],
    ["合计", "", "", "", "", "", "", "", "", "", "2050", "", "644.00", "", ""],
]

PHONE_UTF8_BOM = [  # 2 orders, 3 lines; header on the first row, full-width digits, ¥ prices, 运费 on one row
    ["单号", "日期", "客户", "联系电话", "省", "市", "区", "地址", "物料编码", "品名", "数量", "单价", "备注", "运费",
     "是否开票"],
    ["TEL-0508-01", "2024-05-08", "苏州新锐电子", "0512-66881234 / 13962100001", "江苏省", "苏州市", "工业园区",
     "星湖街328号创意产业园5栋", "JG-B6205", "深沟球轴承 6205", "３０", "¥9.80", "", "15", "是"],
    ["TEL-0508-01", "2024-05-08", "苏州新锐电子", "0512-66881234 / 13962100001", "江苏省", "苏州市", "工业园区",
     "星湖街328号创意产业园5栋", "JG-B6204", "深沟球轴承 6204", "20", "8.50", "", "", ""],
    ["TEL-0508-02", "2024-05-08", "上海沪东机电", "021-58881234", "上海市", "上海市", "浦东新区", "张杨路1000号",
     "JG-M10-60", "六角螺栓 M10×60", "300件", "0.60", "不加急", "", "否"],
]


def _expo_rows() -> list[list[object]]:
    t = datetime(2024, 5, 10, 10, 30)
    return [  # 2 orders, 4 lines; rows of EXPO-002 not next to each other
        ["2024 广州五金展 现场订单"],
        ["日期：2024-05-10", None, None, "展位：3.1馆 A08"],
        ["订单编号", "下单时间", "客户名称", "客户编码", "收货人", "电话", "收货地址", "SKU", "品名", "数量", "单价",
         "金额", "赠品", "加急", "订单金额"],
        ["EXPO-001", t, "佛山顺德力拓机械", "C0088", "黄志强", "13602801234", "广东省佛山市顺德区大良街道新城路9号",
         "JG-B6204", "深沟球轴承 6204", 100, 8.5, 850, "否", "否", 850],
        ["EXPO-002", t, "东莞长安精密", "C0123", "刘洋", "13829201234", "广东省东莞市长安镇振安路18号",
         "JG-M8-50", "六角螺栓 M8×50", 1000, 0.35, 350, "", "是", 470],
        ["EXPO-001", t, "佛山顺德力拓机械", "C0088", "黄志强", "13602801234", "广东省佛山市顺德区大良街道新城路9号",
         "JG-GIFT-01", "展会礼品 卷尺", 1, 0, 0, "是", "", None],
        ["EXPO-002", t, "东莞长安精密", "C0123", "刘洋", "13829201234", "广东省东莞市长安镇振安路18号",
         "JG-N8", "六角螺母 M8", 1000, 0.12, 120, "", "", 470],
    ]


def write_csv(path: Path, rows: list[list[object]], encoding: str) -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]], *, sheet: str = "订单", extra_sheets: bool = True) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for r in rows:
        ws.append(r)
    if len(rows[0]) == 1:
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=6)  # a title, as people make it
    for row in ws.iter_rows():
        for cell in row:
            if isinstance(cell.value, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm"
    if extra_sheets:
        notes = wb.create_sheet("说明")  # no header row: not an order sheet, skipped
        notes.append(["本表由展会现场录入，价格为展会价。"])
        prices = wb.create_sheet("价目表")  # has 商品编码/单价 but no 订单号/数量: skipped
        prices.append(["SKU", "品名", "单价"])
        prices.append(["JG-B6204", "深沟球轴承 6204", 8.5])
    wb.save(path)
    return path


def write_samples(folder: str | Path) -> list[Path]:
    """Write the three example files into ``folder`` (created if missing): 7 orders, 13 lines in all."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    return [
        write_csv(d / "微信订单_20240506.csv", WECHAT_GBK, "gbk"),
        write_csv(d / "电话订单_20240508.csv", PHONE_UTF8_BOM, "utf-8-sig"),
        write_xlsx(d / "广州五金展_20240510.xlsx", _expo_rows()),
    ]


if __name__ == "__main__":
    for p in write_samples(sys.argv[1] if len(sys.argv) > 1 else "inbox"):
        print(p)
