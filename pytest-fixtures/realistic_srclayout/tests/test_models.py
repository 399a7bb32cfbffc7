from decimal import Decimal

import pytest

from inventory import Item, OutOfStock


def test_receive_adds_to_stock(warehouse, catalog):
    warehouse.receive(catalog["BOLT"], 20)
    assert warehouse.stock["BOLT"] == 120


def test_take_returns_the_item(warehouse):
    item = warehouse.take("NUT", 50)
    assert item.name == "Hex nut M8"
    assert warehouse.stock["NUT"] == 200


def test_taking_too_much_raises(warehouse):
    with pytest.raises(OutOfStock) as info:
        warehouse.take("BOLT", 101)
    assert info.value.available == 100
    assert "wanted 101" in str(info.value)


@pytest.mark.parametrize("sku", ["", "bolt", "Bolt"])
def test_bad_skus_are_refused(sku):
    with pytest.raises(ValueError):
        Item(sku, "x", Decimal("1"))


def test_value_of_the_stock(warehouse):
    assert warehouse.value() == Decimal("60.00")


def test_session_fixture_is_built_once(events, warehouse):
    assert events.count("catalog") == 1
