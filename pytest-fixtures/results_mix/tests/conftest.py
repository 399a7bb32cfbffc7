import pytest


@pytest.fixture
def database():
    raise ConnectionError("cannot reach the orders database at db.internal:5432")
