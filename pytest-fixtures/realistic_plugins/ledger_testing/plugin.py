"""The ledger's pytest plugin: markers, a --run-slow option, a fake clock."""

import datetime

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("ledger")
    group.addoption("--run-slow", action="store_true", default=False, help="also run slow tests")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; skipped unless --run-slow")
    config.addinivalue_line("markers", "needs_network: talks to a bank API; never run in CI")
    config.addinivalue_line("markers", "currency(code): the currency a test books in")


def pytest_report_header(config):
    return "ledger plugin: slow tests " + ("on" if config.getoption("--run-slow") else "off")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow to run it")
    skip_net = pytest.mark.skip(reason="needs the network, which CI does not have")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "needs_network" in item.keywords:
            item.add_marker(skip_net)


class FakeClock:
    def __init__(self, start):
        self.now = start

    def advance(self, **kwargs):
        self.now += datetime.timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock():
    return FakeClock(datetime.datetime(2024, 2, 28, 12, 0, 0))


@pytest.fixture
def currency(request):
    marker = request.node.get_closest_marker("currency")
    return marker.args[0] if marker else "EUR"
