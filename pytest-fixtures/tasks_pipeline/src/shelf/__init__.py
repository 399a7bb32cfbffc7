"""A tiny catalogue of books on a shelf."""

from shelf.catalog import Book, Catalog

__all__ = ["Book", "Catalog"]
