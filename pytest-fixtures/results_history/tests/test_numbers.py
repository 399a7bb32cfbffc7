def next_number(last):
    return last + 2


def test_numbers_are_formatted_with_the_year():
    assert f"2026-{7:05d}" == "2026-00007"


def test_numbers_follow_each_other():
    assert next_number(41) == 42
