import pytest

from shelf import Book, Catalog


def make():
    catalog = Catalog()
    catalog.add(Book("Dune", "Herbert", 412))
    catalog.add(Book("Emma", "Austen", 474))
    catalog.add(Book("Persuasion", "Austen", 249))
    return catalog


def test_books_by_an_author_are_sorted():
    assert make().by("Austen") == ["Emma", "Persuasion"]


def test_pages_add_up():
    assert make().pages() == 1135


def test_a_title_is_on_the_shelf_once():
    with pytest.raises(ValueError, match="already on the shelf"):
        make().add(Book("Dune", "Someone", 1))
