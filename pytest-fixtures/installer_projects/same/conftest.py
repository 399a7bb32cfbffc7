import subprocess
import sys


def pytest_report_header(config):
    """The job's packages, as `pip list --format=freeze` sees them from the tests' Python (one
    `installed: NAME==VERSION` line each), for comparing what uv and pip installed."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [f"installed: {line}" for line in listed.stdout.splitlines()]
