import pytest

from textkit import word_counts, wrap_words


def test_wrap():
    assert wrap_words("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]


def test_long_word_gets_its_own_line():
    assert wrap_words("a extraordinarily b", 5) == ["a", "extraordinarily", "b"]


def test_bad_width():
    with pytest.raises(ValueError):
        wrap_words("x", 0)


def test_counts_fold_case():
    assert word_counts("Der der DER straße Straße")["der"] == 3


@pytest.mark.slow
def test_huge_text():
    assert sum(word_counts("word " * 5_000_000).values()) == 5_000_000
