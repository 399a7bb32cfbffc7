def test_passes():
    assert 2 * 2 == 4


def test_fails():
    assert 1 + 1 == 3
