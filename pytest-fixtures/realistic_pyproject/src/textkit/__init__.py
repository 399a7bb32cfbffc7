"""Small text helpers."""

from textkit.slug import slugify
from textkit.wrap import wrap_words
from textkit.counts import word_counts

__all__ = ["slugify", "wrap_words", "word_counts"]
