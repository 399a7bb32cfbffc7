from payments import settle


def test_monthly_total():
    assert settle([1000, 2000]) == 3000


def test_report_with_cents():
    # Known bug as well.
    assert settle([1999, 1]) == 2000 and settle([150]) == 150
