import os
import shutil
import site
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import unitconv

ROOT = Path(__file__).resolve().parent.parent


def test_distribution_metadata():
    assert metadata.version("unitconv") == unitconv.__version__ == "2.3.1"
    assert (ROOT / "src" / "unitconv.egg-info").is_dir()


def test_user_site_points_at_src():
    user_site = Path(site.getusersitepackages())
    pointers = list(user_site.glob("*.egg-link")) + list(user_site.glob("*.pth"))
    texts = [p.read_text(encoding="utf-8") for p in pointers]
    assert any(str(ROOT / "src") in text for text in texts), (pointers, texts)


def test_importable_from_another_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import unitconv; print(unitconv.__file__)"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == ROOT / "src" / "unitconv" / "__init__.py"


@pytest.mark.parametrize(("args", "out"), [(["10", "km", "mi"], "6.21 mi\n")])
def test_console_script(args, out):
    assert shutil.which("unitconv"), os.environ.get("PATH")
    result = subprocess.run(["unitconv", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == out
