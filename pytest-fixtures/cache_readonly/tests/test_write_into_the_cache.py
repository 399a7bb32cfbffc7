import os
import shutil
from pathlib import Path


def test_changing_an_installed_module():
    import greetkit

    with open(greetkit.__file__, "a", encoding="utf-8") as module:
        module.write("\n\ndef greet(name, lang='en'):\n    return 'changed by a test'\n")


def test_adding_a_file_to_the_user_base():
    Path(os.environ["PYTHONUSERBASE"], "planted.txt").write_text("left by a test\n")


def test_removing_the_console_script():
    os.remove(shutil.which("say-hello"))
