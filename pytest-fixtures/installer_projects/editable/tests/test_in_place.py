import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import beta
import inplace

SRC = Path(__file__).resolve().parent.parent / "src"


def test_the_project_is_imported_from_its_working_copy():
    assert Path(inplace.__file__).resolve() == SRC / "inplace" / "__init__.py"
    assert version("inplace") == "0.2"


def test_its_dependency_is_installed():
    assert (version("beta"), beta.VERSION) == ("1.1", "1.1")


def test_a_new_module_is_importable_without_reinstalling(tmp_path):
    (SRC / "inplace" / "added.py").write_text("ADDED = True\n")
    # Another folder as the working directory: the import goes through the installed .pth.
    out = subprocess.run(
        [sys.executable, "-c", "import inplace.added; print(inplace.added.ADDED)"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
    )
    assert out.stdout == "True\n", out.stderr
