import pytest

from csvtool import Table


@pytest.fixture
def people():
    return Table(["name", "city"], [["Zoë", "Genève"], ["Åsa", "Malmö"], ["Li", "北京"]])


@pytest.fixture
def sep():
    return ";"
