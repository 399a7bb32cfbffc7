import os
import signal
import time


def test_cannot_kill_pid1():
    for sig in (signal.SIGKILL, signal.SIGTERM):
        try:
            os.kill(1, sig)
        except OSError as e:
            print(f"kill(1, {sig.name}): {e!r}")
    time.sleep(0.5)
    assert os.path.exists("/proc/1"), "PID 1 is gone"
