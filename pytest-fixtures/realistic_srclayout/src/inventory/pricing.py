from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

from inventory.models import Item

CENT = Decimal("0.01")


def line_total(item: Item, quantity: int, discount_percent: int = 0) -> Decimal:
    if not 0 <= discount_percent <= 100:
        raise ValueError("discount must be between 0 and 100")
    gross = item.unit_price * quantity
    net = gross * (Decimal(100 - discount_percent) / 100)
    return net.quantize(CENT, rounding=ROUND_HALF_UP)


def order_total(lines: Iterable[tuple[Item, int]]) -> Decimal:
    return sum((line_total(item, qty) for item, qty in lines), Decimal("0.00"))
