"""The project's own checker: every Python file under the folders given must compile."""

import sys
from pathlib import Path

files = sorted(p for root in sys.argv[1:] for p in Path(root).rglob("*.py"))
bad = 0
for path in files:
    try:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except SyntaxError as error:
        print(f"lint: {path}:{error.lineno}: {error.msg}")
        bad += 1
    else:
        print(f"lint: ok {path}")
print(f"lint: {len(files)} files checked, {bad} with errors")
sys.exit(1 if bad else 0)
