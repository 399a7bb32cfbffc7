from decimal import Decimal

import pytest

from inventory import line_total, order_total


@pytest.mark.parametrize(
    ("quantity", "discount", "expected"),
    [(1, 0, "89.90"), (3, 10, "242.73"), (2, 100, "0.00")],
    ids=["single", "ten-percent", "free"],
)
def test_line_total(catalog, quantity, discount, expected):
    assert line_total(catalog["DRILL"], quantity, discount) == Decimal(expected)


def test_order_total(catalog):
    lines = [(catalog["BOLT"], 10), (catalog["NUT"], 10)]
    assert order_total(lines) == Decimal("4.50")
