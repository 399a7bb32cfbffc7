import pytest


def luhn_digit(number):
    """The Luhn check digit of `number` (a string of digits)."""
    total = 0
    for i, d in enumerate(reversed(number)):
        d = int(d)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid(number):
    return luhn_digit(number[:-1]) == int(number[-1])


@pytest.mark.parametrize("n", range(5000))
def test_a_number_with_its_check_digit_is_valid(n):
    body = f"{n * 7919:012d}"
    assert is_valid(body + str(luhn_digit(body)))
