from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


class OutOfStock(Exception):
    """Raised when more units are taken than the warehouse holds."""

    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: wanted {wanted}, only {available} in stock")
        self.sku = sku
        self.wanted = wanted
        self.available = available


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    unit_price: Decimal

    def __post_init__(self) -> None:
        if not self.sku or not self.sku.isupper():
            raise ValueError(f"SKU must be non-empty upper case: {self.sku!r}")
        if self.unit_price < 0:
            raise ValueError("unit price must not be negative")


@dataclass
class Warehouse:
    name: str
    stock: dict[str, int] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)

    def receive(self, item: Item, quantity: int) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.items[item.sku] = item
        self.stock[item.sku] = self.stock.get(item.sku, 0) + quantity

    def take(self, sku: str, quantity: int) -> Item:
        available = self.stock.get(sku, 0)
        if quantity > available:
            raise OutOfStock(sku, quantity, available)
        self.stock[sku] = available - quantity
        return self.items[sku]

    def value(self) -> Decimal:
        return sum(
            (self.items[sku].unit_price * count for sku, count in self.stock.items()),
            Decimal("0"),
        )
