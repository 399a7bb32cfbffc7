import pytest

from budget import format_cents, split_evenly, to_cents


@pytest.mark.parametrize(("text", "cents"), [("12.5", 1250), ("0.07", 7), ("3", 300)])
def test_to_cents(text, cents):
    assert to_cents(text) == cents


def test_format():
    assert format_cents(1999) == "19.99 €"


def test_split_without_remainder():
    assert split_evenly(900, 3) == [300, 300, 300]


def test_split_keeps_every_cent():
    assert sum(split_evenly(1000, 3)) == 1000


def test_split_gives_the_remainder_to_the_first():
    assert split_evenly(1001, 4) == [251, 250, 250, 250]
