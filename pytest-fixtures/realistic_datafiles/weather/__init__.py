from weather.parse import read_csv, read_stations, summarize

__all__ = ["read_csv", "read_stations", "summarize"]
