import pytest

from textkit import slugify


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Hello, World!", "hello-world"),
        ("Crème brûlée", "creme-brulee"),
        ("  many   spaces  ", "many-spaces"),
        ("Ünïcödé 2024", "unicode-2024"),
    ],
)
def test_slugify(text, slug):
    assert slugify(text) == slug


def test_custom_separator():
    assert slugify("a b c", separator="_") == "a_b_c"
