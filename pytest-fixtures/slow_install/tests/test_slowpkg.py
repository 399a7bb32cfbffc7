import importlib.metadata

import slowpkg


def test_the_installed_package_is_importable():
    assert slowpkg.VALUE == 42
    assert importlib.metadata.version("slowpkg") == "0.1"
