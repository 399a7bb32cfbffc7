import pytest


def test_pytest_importable():
    assert pytest.__version__
