import os

import pytest

from orders import discounted, header, receipt, total


def test_an_empty_order_costs_nothing():
    assert total([]) == 0


def test_total_adds_every_line():
    assert total([(2, 150), (1, 99)]) == 399


def test_discount_takes_off_its_percentage():
    assert discounted(1000, 10) == 900


def test_discount_rounds_half_up():
    assert discounted(999, 15) == 850


def test_saved_order_reloads(database):
    assert database.load(1) is not None


@pytest.mark.skip(reason="PDF receipts are not built yet")
def test_receipt_as_pdf():
    raise NotImplementedError


@pytest.mark.xfail(reason="binary floats: 2.675 is 2.67499999...")
def test_price_rounding_in_floats():
    assert round(2.675, 2) == 2.68


@pytest.mark.xfail(reason="failed on Python 3.7", strict=False)
def test_totals_of_large_orders():
    assert total([(10**6, 10**6)]) == 10**12


def test_payment_gateway_answers():
    # The gateway times out now and then: only on the first attempt here.
    attempt = os.environ["CI_ATTEMPT"]
    assert attempt != "1", f"the payment gateway timed out (attempt {attempt})"


def test_receipt_lists_every_line():
    lines = [(1, 100 + i) for i in range(10_000)]
    text = receipt(lines)
    assert "line 10000" in text, text


def test_receipt_header_renders():
    shown = header("Café 日本 🚀")
    assert shown == "Café 日本 🚀", f"the header holds escapes: {shown}"
