import hashlib
from pathlib import Path

import pytest

from weather import read_csv, read_stations

HERE = Path(__file__).parent
DATA = HERE / "data"
ROOT = HERE.parent


def test_stations_json_with_a_japanese_name():
    stations = read_stations(DATA / "日本の観測所.json")
    assert stations["47662"]["name"] == "東京"
    assert stations["47772"]["romaji"] == "Ōsaka"


def test_binary_file_is_byte_for_byte():
    png = (DATA / "images" / "station.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) == 98
    assert hashlib.sha256(png).hexdigest() == (
        "d72dc98ac7f1b0068d47a0ff02a53ee600ff4c248575feaf65dbc9704431858f"
    )


def test_a_folder_holding_only_data():
    archive = DATA / "stations" / "archive"
    files = sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file())
    assert files == ["2023/readings.csv", "README.txt"]
    rows = read_csv(archive / "2023" / "readings.csv")
    assert [r["remarque"] for r in rows] == ["sonnig", "heiß", "Gewitter ⛈"]


def test_empty_file_is_kept():
    empty = DATA / "empty.txt"
    assert empty.is_file()
    assert empty.stat().st_size == 0


@pytest.mark.parametrize(
    ("locale", "hello"),
    [("en", "Hello"), ("de", "Grüß Gott"), ("ja", "こんにちは")],
)
def test_resources_outside_the_tests_folder(locale, hello):
    text = (ROOT / "resources" / "locales" / f"{locale}.txt").read_text(encoding="utf-8")
    assert dict(line.split("=", 1) for line in text.splitlines())["hello"] == hello
