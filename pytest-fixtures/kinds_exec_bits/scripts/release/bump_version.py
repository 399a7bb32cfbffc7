#!/usr/bin/env python3
"""Prints the next version: bump_version.py 1.2.3 minor -> 1.3.0"""
import sys

major, minor, patch = map(int, sys.argv[1].split("."))
part = sys.argv[2]
if part == "major":
    major, minor, patch = major + 1, 0, 0
elif part == "minor":
    minor, patch = minor + 1, 0
else:
    patch += 1
print(f"{major}.{minor}.{patch}")
