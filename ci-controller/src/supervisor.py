# PID 1 of every job container: `python3 -c <this> CMD...`.
# Runs CMD as its child in its own process group and waits for it. Signals sent from outside the
# container (Docker's stop and kill; the kernel reports them with si_pid 0) are forwarded to the
# child's process group; signals sent from inside (a test signalling PID 1) are ignored, so a job
# cannot stop itself that way. Orphaned processes are reaped. Exits with the child's exit code,
# or 128 + the signal that killed it.
import os
import signal
import sys

FORWARD = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}
WAITED = FORWARD | {signal.SIGCHLD}
signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as e:
        print(f"cannot run {sys.argv[1]}: {e}", file=sys.stderr, flush=True)
        os._exit(127)
try:
    os.setpgid(child, child)
except OSError:
    pass
status = None
while status is None:
    info = signal.sigwaitinfo(WAITED)
    if info.si_signo == signal.SIGCHLD:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == child:
                status = st
    elif info.si_pid == 0:
        try:
            os.killpg(child, info.si_signo)
        except ProcessLookupError:
            pass
if os.WIFSIGNALED(status):
    sys.exit(128 + os.WTERMSIG(status))
sys.exit(os.WEXITSTATUS(status))
