import os
import shutil
import site
import subprocess
from importlib import metadata
from pathlib import Path


def test_the_package_comes_from_the_user_install():
    import greetkit

    assert Path(greetkit.__file__).is_relative_to(site.getusersitepackages())
    assert Path(site.getuserbase()) == Path(os.environ["PYTHONUSERBASE"])
    assert metadata.version("greetkit") == "0.3.0"


def test_the_console_script_runs_by_name():
    found = shutil.which("say-hello")
    assert found, "say-hello is not on PATH: " + os.environ.get("PATH", "")
    assert Path(found).parent == Path(site.getuserbase()) / "bin"
    result = subprocess.run(
        ["say-hello", "Zoë", "--lang", "fr"], capture_output=True, encoding="utf-8"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Bonjour, Zoë!\n"


def test_the_installed_code_is_the_wheel_s():
    import greetkit

    assert greetkit.greet("世界", "ja") == "こんにちは, 世界!"
    assert "changed by a test" not in Path(greetkit.__file__).read_text(encoding="utf-8")


def test_nothing_was_left_in_the_user_base():
    planted = Path(os.environ["PYTHONUSERBASE"], "planted.txt")
    assert not planted.exists(), planted.read_text(encoding="utf-8")
