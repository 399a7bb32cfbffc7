"""A setup.py-only project, installed in place."""

VERSION = "0.1"
