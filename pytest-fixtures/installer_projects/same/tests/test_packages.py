import subprocess
from importlib.metadata import version

import alpha
import beta
import greetkit


def test_the_newest_beta_satisfies_alpha():
    assert (alpha.VERSION, beta.VERSION) == ("1.0", "1.1")
    assert version("beta") == "1.1"


def test_greetkit_is_installed():
    assert greetkit.greet("Ada", "fr") == "Bonjour, Ada!"


def test_console_scripts_run_by_name():
    out = subprocess.run(["alpha-version"], capture_output=True, text=True, check=True)
    assert out.stdout == "alpha 1.0\n"
    out = subprocess.run(["say-hello", "Ada"], capture_output=True, text=True, check=True)
    assert out.stdout == "Hello, Ada!\n"
