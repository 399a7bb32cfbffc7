from pathlib import Path

import pytest

from weather import read_csv, summarize

DATA = Path(__file__).parent / "data"
OBSERVATIONS = DATA / "données_météo.csv"


def test_non_ascii_file_names_arrive_intact():
    names = {p.name for p in DATA.iterdir()}
    assert {"données_météo.csv", "日本の観測所.json", "empty.txt", "images", "stations"} <= names


def test_rows_and_non_ascii_content():
    rows = read_csv(OBSERVATIONS)
    assert [r["station"] for r in rows] == ["Saint-Étienne", "Saint-Étienne", "Besançon", "Besançon"]
    assert rows[2]["remarque"] == "gelée blanche ❄"


def test_raw_bytes_are_utf8():
    raw = OBSERVATIONS.read_bytes()
    assert "Besançon".encode("utf-8") in raw
    assert "❄".encode("utf-8") == b"\xe2\x9d\x84" and b"\xe2\x9d\x84" in raw
    assert raw.decode("utf-8").count("\n") == 5


def test_summary():
    assert summarize(read_csv(OBSERVATIONS)) == {"days": 4, "mean_temp_c": 0.88, "rain_mm": 16.8}


@pytest.mark.parametrize("station", ["Saint-Étienne", "Besançon"])
def test_each_station_has_two_days(station):
    assert sum(1 for r in read_csv(OBSERVATIONS) if r["station"] == station) == 2
