import ctypes
import os
import signal
import time


def status(pid):
    """The fields of /proc/PID/status, by name."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_cannot_kill_pid1():
    for sig in (signal.SIGKILL, signal.SIGTERM):
        try:
            os.kill(1, sig)
        except OSError as e:
            print(f"kill(1, {sig.name}): {e!r}")
    time.sleep(0.5)
    assert os.path.exists("/proc/1"), "PID 1 is gone"


def test_the_job_runs_as_its_own_user_without_capabilities():
    me = status("self")
    assert os.getuid() != 0 and os.geteuid() != 0
    assert int(me["CapEff"], 16) == 0, me["CapEff"]
    assert int(me["CapPrm"], 16) == 0, me["CapPrm"]
    # (No permitted capability means no ambient one either.)
    PR_GET_NO_NEW_PRIVS = 39
    assert ctypes.CDLL(None, use_errno=True).prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    # PID 1 (the supervisor) is another user's: signals from the job are refused.
    try:
        os.kill(1, 0)
    except PermissionError:
        pass
    else:
        raise AssertionError("the job may signal PID 1")
