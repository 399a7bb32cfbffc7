import os

import pytest

import inventory
from inventory import storage


@pytest.mark.storage
def test_round_trip(warehouse, store_path):
    storage.save(warehouse, store_path)
    loaded = storage.load(store_path)
    assert loaded == warehouse


def test_the_package_is_installed_not_just_on_the_path():
    from importlib import metadata

    assert metadata.version("inventory") == inventory.__version__
    # setup.py develop writes the egg-info next to the package, in the project's src/.
    src = os.path.dirname(os.path.dirname(inventory.__file__))
    assert os.path.isdir(os.path.join(src, "inventory.egg-info"))
