from importlib.metadata import version


def test_the_pinned_versions_are_installed():
    assert (version("alpha"), version("beta")) == ("1.0", "1.1")
