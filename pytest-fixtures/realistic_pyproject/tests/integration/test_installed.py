from importlib import metadata

import pytest

import textkit


@pytest.mark.integration
def test_installed_with_metadata():
    assert metadata.version("textkit") == "0.7.2"
    assert "test" in (metadata.metadata("textkit").get_all("Provides-Extra") or [])
    # Imported from the install (user site), not from the project folder.
    assert "site-packages" in textkit.__file__


@pytest.mark.integration
def test_pipeline():
    text = "Crème brûlée and crème fraîche"
    assert [slug for slug in map(textkit.slugify, textkit.wrap_words(text, 12))] == [
        "creme-brulee",
        "and-creme",
        "fraiche",
    ]
