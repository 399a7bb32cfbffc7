"""Installed in place: imported from the project's src/ folder."""

VERSION = "0.2"
