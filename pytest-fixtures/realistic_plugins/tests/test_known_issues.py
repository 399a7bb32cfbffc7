import pytest

from ledger import Ledger


@pytest.mark.xfail(reason="rounding of negative splits is not implemented", strict=True)
def test_split_negative_amounts():
    # The part carrying the extra cent should come first, as it does for positive amounts.
    assert Ledger().split(-100, 3) == [-34, -33, -33]


@pytest.mark.xfail(reason="may be fixed upstream", strict=False)
def test_split_exact():
    # Passes today: reported as xpassed, which does not fail a non-strict xfail.
    assert Ledger().split(90, 3) == [30, 30, 30]


@pytest.mark.parametrize(
    ("amount", "parts", "expected"),
    [
        pytest.param(10, 4, [3, 3, 2, 2], id="remainder"),
        pytest.param(
            10, 0, [], id="zero-parts", marks=pytest.mark.xfail(raises=ZeroDivisionError, strict=True)
        ),
    ],
)
def test_split(amount, parts, expected):
    assert Ledger().split(amount, parts) == expected


@pytest.mark.skip(reason="reconciliation is being rewritten")
def test_reconcile():
    raise AssertionError("never runs")
