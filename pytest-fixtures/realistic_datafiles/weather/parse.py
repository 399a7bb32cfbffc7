import csv
import json
from pathlib import Path
from statistics import mean


def read_csv(path: Path) -> list:
    with open(path, encoding="utf-8", newline="") as f:
        return [
            {**row, "temp_c": float(row["temp_c"]), "rain_mm": float(row["rain_mm"])}
            for row in csv.DictReader(f, delimiter=";")
        ]


def read_stations(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return {s["id"]: s for s in json.load(f)["stations"]}


def summarize(rows: list) -> dict:
    return {
        "days": len(rows),
        "mean_temp_c": round(mean(r["temp_c"] for r in rows), 2),
        "rain_mm": round(sum(r["rain_mm"] for r in rows), 1),
    }
