import os
import shutil
import site
import subprocess
from importlib import metadata
from pathlib import Path


def test_the_script_is_on_path_in_the_user_install():
    found = shutil.which("say-hello")
    assert found, "say-hello is not on PATH: " + os.environ.get("PATH", "")
    assert Path(found).parent == Path(site.getuserbase()) / "bin"


def test_the_script_runs_by_name():
    result = subprocess.run(
        ["say-hello", "Zoë", "--lang", "fr"], capture_output=True, encoding="utf-8"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Bonjour, Zoë!\n"


def test_the_package_comes_from_the_install():
    import greetkit

    assert Path(greetkit.__file__).is_relative_to(site.getusersitepackages())
    assert greetkit.greet("世界", "ja") == "こんにちは, 世界!"


def test_entry_point_metadata():
    assert metadata.version("greetkit") == "0.3.0"
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts["say-hello"] == "greetkit.cli:main"
