import json
from pathlib import Path

from shipping import quote

KEY = "shipping/quotes"


def test_cache_plugin_and_addopts_are_active(request):
    config = request.config
    assert config.pluginmanager.hasplugin("cacheprovider")
    assert config.getoption("lf") is True
    assert config.getoption("newfirst") is True
    assert config.getini("cache_dir") == ".cache/pytest"


def test_cache_fixture_set_then_get(cache):
    quotes = {"1kg": quote(1), "3kg-express": quote(3, "express")}
    cache.set(KEY, quotes)
    assert cache.get(KEY, None) == quotes
    assert cache.get("shipping/missing", "default") == "default"


def test_request_config_cache_sees_the_same_values(request):
    # Set by the previous test in this file, in the same session.
    assert request.config.cache.get(KEY, None) == {"1kg": 4.9, "3kg-express": 14.7}


def test_cache_mkdir_is_writable(cache):
    folder = Path(cache.mkdir("shipping-labels"))
    label = folder / "label.json"
    label.write_text(json.dumps({"to": "Zoë", "city": "Genève"}), encoding="utf-8")
    assert json.loads(label.read_text(encoding="utf-8"))["city"] == "Genève"


def test_cache_files_are_in_the_configured_folder(request):
    root = Path(request.config.rootpath) / ".cache" / "pytest"
    assert (root / "v" / "shipping" / "quotes").is_file()
