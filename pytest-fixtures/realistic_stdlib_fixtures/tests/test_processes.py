import os
import subprocess
import sys
from pathlib import Path

import notes

ROOT = Path(__file__).resolve().parent.parent
EXPORT = ROOT / "bin" / "notes-export.sh"


def test_python_subprocess_prints_non_ascii():
    result = subprocess.run(
        [sys.executable, "-c", "print('héllo 日本 🚀'); import sys; print('err ß', file=sys.stderr)"],
        capture_output=True,
        encoding="utf-8",
        check=True,
    )
    assert result.stdout == "héllo 日本 🚀\n"
    assert result.stderr == "err ß\n"


def test_python3_on_path_runs_the_package():
    result = subprocess.run(
        ["python3", "-c", "import notes, sys; print(notes.__name__, sys.version_info[0])"],
        capture_output=True,
        encoding="utf-8",
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.split() == ["notes", "3"]


def test_the_export_script_is_executable_and_runs(tmp_path, capsys):
    assert os.access(EXPORT, os.X_OK), f"{EXPORT} lost its executable bit"
    store = notes.NoteStore(tmp_path)
    store.add("zèbre", "rayé\nnoir et blanc")
    store.add("abeille", "🐝 bzz")
    result = subprocess.run([str(EXPORT), str(tmp_path)], capture_output=True, encoding="utf-8")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "abeille: 🐝 bzz\nzèbre: rayé\nexported by notes-export.sh ✓\n"
    with capsys.disabled():
        print("\n[export] " + result.stdout.replace("\n", " | "))


def test_capfd_sees_a_child_process_output(capfd):
    subprocess.run(["sh", "-c", "printf 'from the shell: ✓\\n'"], check=True)
    out, _ = capfd.readouterr()
    assert out == "from the shell: ✓\n"
