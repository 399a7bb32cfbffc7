import logging
import os
from pathlib import Path

import pytest

import notes
from notes import NoteStore


@pytest.fixture
def store(tmp_path):
    return NoteStore(tmp_path / "notes")


def test_add_and_list(store, tmp_path):
    store.add("courses", "pain, fromage, crème fraîche")
    store.add("日本語", "漢字とかな")
    assert store.titles() == ["courses", "日本語"]
    assert (tmp_path / "notes" / "日本語.txt").read_text(encoding="utf-8") == "漢字とかな"


def test_show_prints_non_ascii(store, capsys):
    store.add("straße", "Grüße aus Köln 🚀")
    store.show("straße")
    out, err = capsys.readouterr()
    assert out == "# straße\nGrüße aus Köln 🚀\n"
    assert err == ""


def test_logging(store, caplog):
    with caplog.at_level(logging.INFO, logger="notes"):
        store.add("résumé", "x" * 12)
        with pytest.raises(ValueError):
            store.add("a/b", "nope")
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert "saved note résumé (12 characters)" in caplog.text
    assert "refused note title 'a/b'" in caplog.text


def test_default_store_honours_notes_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTES_DIR", str(tmp_path / "elsewhere"))
    assert notes.default_store().root == tmp_path / "elsewhere"


def test_default_store_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTES_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert notes.default_store().root == tmp_path / ".notes"
    assert (tmp_path / ".notes").is_dir()


def test_monkeypatch_chdir_and_setattr(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(NoteStore, "titles", lambda self: ["patched"])
    assert Path.cwd() == tmp_path
    assert NoteStore("relative").titles() == ["patched"]
    assert (tmp_path / "relative").is_dir()


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


@pytest.mark.parametrize("n", [1, 2])
def test_session_temp_dir_is_shared(shared_dir, n):
    (shared_dir / f"{n}.txt").write_text("ok")
    assert os.path.isdir(shared_dir)
    assert len(list(shared_dir.iterdir())) == n
