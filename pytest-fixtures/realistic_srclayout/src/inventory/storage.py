from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from inventory.models import Item, Warehouse


def save(warehouse: Warehouse, path: Path) -> None:
    data = {
        "name": warehouse.name,
        "items": {
            sku: {"name": item.name, "unit_price": str(item.unit_price)}
            for sku, item in warehouse.items.items()
        },
        "stock": warehouse.stock,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def load(path: Path) -> Warehouse:
    data = json.loads(path.read_text(encoding="utf-8"))
    items = {
        sku: Item(sku, fields["name"], Decimal(fields["unit_price"]))
        for sku, fields in data["items"].items()
    }
    return Warehouse(data["name"], dict(data["stock"]), items)
