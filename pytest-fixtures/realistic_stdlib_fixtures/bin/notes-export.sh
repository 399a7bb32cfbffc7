#!/bin/sh
# Exports every note in the folder given as $1 as "title: first line", sorted by title.
set -eu
dir="$1"
for f in "$dir"/*.txt; do
    title=$(basename "$f" .txt)
    printf '%s: %s\n' "$title" "$(head -n 1 "$f")"
done | sort
echo "exported by $(basename "$0") ✓"
