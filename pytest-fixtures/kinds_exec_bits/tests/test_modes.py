import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mode(relative):
    return stat.S_IMODE(os.stat(ROOT / relative).st_mode)


@pytest.mark.parametrize("path", ["tools/bin/lint.sh", "scripts/release/bump_version.py"])
def test_executables_keep_their_bit(path):
    assert mode(path) & stat.S_IXUSR, f"{path} has mode {mode(path):o}"
    assert os.access(ROOT / path, os.X_OK)


@pytest.mark.parametrize("path", ["data/notes.txt", "data/not_a_tool.sh"])
def test_plain_files_stay_plain(path):
    assert mode(path) & 0o111 == 0, f"{path} has mode {mode(path):o}"


def test_nested_shell_script_runs_by_relative_path():
    result = subprocess.run(
        ["tools/bin/lint.sh", "a.py", "b.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "lint.sh checked 2 file(s): a.py b.py\n"


def test_python_script_runs_through_its_shebang():
    result = subprocess.run(
        ["./scripts/release/bump_version.py", "1.9.4", "minor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.10.0\n"
    with pytest.raises(PermissionError):
        subprocess.run(["./data/not_a_tool.sh"], cwd=ROOT)
