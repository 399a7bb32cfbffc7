"""Warehouse inventory: items, stock levels and a JSON store."""

from inventory.models import Item, OutOfStock, Warehouse
from inventory.pricing import line_total, order_total

__all__ = ["Item", "OutOfStock", "Warehouse", "line_total", "order_total"]
__version__ = "1.4.0"
