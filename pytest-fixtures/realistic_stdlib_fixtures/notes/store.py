import logging
import os
from pathlib import Path

log = logging.getLogger("notes")


class NoteStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def add(self, title: str, text: str) -> Path:
        if not title or "/" in title:
            log.warning("refused note title %r", title)
            raise ValueError(f"bad title: {title!r}")
        path = self.root / f"{title}.txt"
        path.write_text(text, encoding="utf-8")
        log.info("saved note %s (%d characters)", title, len(text))
        return path

    def titles(self) -> list:
        return sorted(p.stem for p in self.root.glob("*.txt"))

    def show(self, title: str) -> None:
        print(f"# {title}")
        print((self.root / f"{title}.txt").read_text(encoding="utf-8"))


def default_store() -> NoteStore:
    """$NOTES_DIR if set, else ~/.notes."""
    return NoteStore(Path(os.environ.get("NOTES_DIR") or Path.home() / ".notes"))
