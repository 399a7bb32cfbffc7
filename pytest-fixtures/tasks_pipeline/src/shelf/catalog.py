from dataclasses import dataclass, field


@dataclass(frozen=True)
class Book:
    title: str
    author: str
    pages: int


@dataclass
class Catalog:
    books: list = field(default_factory=list)

    def add(self, book):
        if any(b.title == book.title for b in self.books):
            raise ValueError(f"{book.title!r} is already on the shelf")
        self.books.append(book)

    def by(self, author):
        return sorted(b.title for b in self.books if b.author == author)

    def pages(self):
        return sum(b.pages for b in self.books)
