from importlib.metadata import version
from pathlib import Path

import alpha
import legacy_setup

SRC = Path(__file__).resolve().parent.parent / "src"


def test_the_project_is_imported_from_its_working_copy():
    assert Path(legacy_setup.__file__).resolve() == SRC / "legacy_setup" / "__init__.py"
    assert version("legacy-setup") == "0.1"


def test_its_dependencies_are_installed():
    assert (version("alpha"), version("beta"), alpha.VERSION) == ("1.0", "1.1", "1.0")
