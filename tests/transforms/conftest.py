import copy
from decimal import Decimal

import pytest

from orderhub.transforms import load_mapping

BASE = {
    "bill_no": "SO1", "status": "A", "order_date": "2026-11-20 09:00:00", "updated_at": "2026-11-20 09:05:00",
    "customer_code": "C1", "customer_name": "常州五金", "receiver_name": "王建国", "receiver_phone": "13912345678",
    "receiver_address": "江苏省常州市武进区湖塘镇工业路18号", "total_amount": "235.00", "urgent": 0, "remark": "",
    "_shop": "main",
    "lines": [{"id": 11, "line_no": 1, "sku": "M8-BOLT-20", "sku_name": "螺栓", "qty": "500", "price": "0.35",
               "amount": "175.00"},
              {"id": 12, "line_no": 2, "sku": "M8-NUT", "sku_name": "螺母", "qty": "500", "price": "0.12",
               "amount": "60.00"}],
}


@pytest.fixture
def erp_mapping():
    return load_mapping("erp_sql")


@pytest.fixture
def make_order():
    def make(n: int = 1, **kw):
        r = copy.deepcopy(BASE)
        r["bill_no"] = f"SO{n}"
        r.update(kw)
        return r
    return make


D = Decimal
