import sys

import pytest

from ledger import Ledger, UnbalancedError


@pytest.fixture
def book():
    return Ledger()


@pytest.mark.parametrize(
    ("debit", "credit", "amount"),
    [
        pytest.param("cash", "sales", 100, id="sale"),
        pytest.param("stock", "cash", 40, id="purchase"),
        pytest.param("rent", "bank", 1200, id="rent"),
    ],
)
def test_posting_keeps_the_books_balanced(book, debit, credit, amount):
    book.post(debit, credit, amount)
    assert book.balance(debit) == amount
    assert book.trial_balance() == 0


@pytest.mark.parametrize("amount", [0, -5], ids=["zero", "negative"])
def test_non_positive_amounts_are_refused(book, amount):
    with pytest.raises(UnbalancedError):
        book.post("a", "b", amount)


def test_posting_to_itself_is_refused(book):
    with pytest.raises(UnbalancedError, match="differ"):
        book.post("cash", "cash", 1)


@pytest.mark.currency("JPY")
def test_currency_marker(currency):
    assert currency == "JPY"


def test_default_currency(currency):
    assert currency == "EUR"


def test_clock_fixture_from_the_plugin(book, clock):
    book.post("cash", "sales", 10, when=clock.now)
    later = clock.advance(days=2)
    assert later.month == 3 and later.day == 1  # 2024 is a leap year
    assert book.postings[0][0] < later


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")
def test_runs_on_linux():
    assert sys.platform.startswith("linux")


@pytest.mark.skipif(sys.version_info >= (3, 0), reason="Python 2 only")
def test_python2_only():
    raise AssertionError("never runs")


@pytest.mark.slow
def test_a_year_of_postings(book):
    for day in range(365):
        book.post("cash", "sales", day + 1)
    assert book.balance("cash") == 365 * 366 // 2


@pytest.mark.needs_network
def test_fetch_exchange_rates():
    raise AssertionError("never runs")


def test_numpy_export():
    np = pytest.importorskip("numpy")  # not in the runner image: skipped
    assert np.array([1]).sum() == 1
