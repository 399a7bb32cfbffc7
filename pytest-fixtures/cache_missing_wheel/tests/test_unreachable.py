def test_never_runs():
    # The install fails, so the tests are skipped.
    import tinyplot  # noqa: F401
