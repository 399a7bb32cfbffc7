def test_addition():
    assert 1 + 1 == 2


def test_string():
    assert "ci".upper() == "CI"
