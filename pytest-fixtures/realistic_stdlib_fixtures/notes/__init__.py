from notes.store import NoteStore, default_store

__all__ = ["NoteStore", "default_store"]
