from importlib import metadata
from pathlib import Path

EXPECTED = Path(__file__).parent.parent / "expected_version.txt"


def test_the_installed_version_is_the_expected_one():
    assert metadata.version("greetkit") == EXPECTED.read_text(encoding="utf-8").strip()


def test_the_package_works():
    import greetkit

    assert greetkit.greet("Ada") == "Hello, Ada!"
