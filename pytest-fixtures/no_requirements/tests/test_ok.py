def test_ok():
    assert sum([1, 2, 3]) == 6
