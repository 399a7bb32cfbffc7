import os

import pytest


@pytest.mark.parametrize("path", ["/etc/ci-test", "/usr/ci-test", "/ci-test"])
def test_cannot_write_outside(path):
    with pytest.raises(OSError):
        with open(path, "w") as f:
            f.write("escaped")


@pytest.mark.parametrize("directory", [os.getcwd(), "/tmp"])
def test_can_write_workspace_and_tmp(directory):
    path = os.path.join(directory, f"ci-write-test-{os.getpid()}")
    with open(path, "w") as f:
        f.write("ok")
    with open(path) as f:
        assert f.read() == "ok"
    os.remove(path)
