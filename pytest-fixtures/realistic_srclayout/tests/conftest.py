from decimal import Decimal

import pytest

from inventory import Item, Warehouse

EVENTS = []


@pytest.fixture(scope="session")
def catalog():
    """Built once for the whole session."""
    EVENTS.append("catalog")
    return {
        "BOLT": Item("BOLT", "Hex bolt M8", Decimal("0.35")),
        "NUT": Item("NUT", "Hex nut M8", Decimal("0.10")),
        "DRILL": Item("DRILL", "Cordless drill", Decimal("89.90")),
    }


@pytest.fixture
def warehouse(catalog):
    """A fresh warehouse per test; checks on teardown that no stock went negative."""
    house = Warehouse("north")
    house.receive(catalog["BOLT"], 100)
    house.receive(catalog["NUT"], 250)
    yield house
    assert all(count >= 0 for count in house.stock.values())
    EVENTS.append("warehouse-teardown")


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "store" / "warehouse.json"
    path.parent.mkdir()
    yield path
    # Teardown: the store never leaves its temporary file behind.
    assert not path.with_suffix(".tmp").exists()


@pytest.fixture(scope="session")
def events():
    return EVENTS
