# PID 1 of every job container: `python3 -I -c <this> UID:GID [--relay] CMD...`.
# Runs CMD as its child in its own process group, as the job's user UID:GID, and waits for it.
# The supervisor itself runs as the container's root with only CAP_SETUID and CAP_SETGID (to
# become the job's user in the child, which drops every capability with it), so the job's
# processes cannot signal, trace or read it: a test's kill(1, SIGKILL) fails with EPERM under any
# runtime (gVisor's kernel, unlike Linux, does not otherwise shield a container's PID 1). Signals
# sent from outside the container (Docker's stop and kill; the kernel reports them with si_pid 0)
# are forwarded to the child's process group; any other signal is ignored. Orphaned processes are
# reaped. Exits with the child's exit code, or 128 + the signal that killed it.
# `-I` keeps the job's files and PYTHON* variables out of this process (no current folder on
# sys.path, no user site); the child's environment is the container's, unchanged.
# With --relay, the child's stdout and stderr are pipes of the container's own kernel, copied
# whole to this process's stdout and stderr: gVisor's (runsc 2022-12) writes to the container's
# output pipes can be short, and programs that do not write the rest (Python with
# PYTHONUNBUFFERED=1, for one) would lose output.
import os
import select
import signal
import sys
import threading


def relay(source, target):
    """Copies the pipe `source` to `target` until end of file, all of every read (a write may be
    short). Should `target` fail, the rest is read and dropped: the child never blocks on a full
    pipe."""
    broken = False
    while True:
        data = os.read(source, 65536)
        if not data:
            return
        view = memoryview(data)
        while view and not broken:
            try:
                view = view[os.write(target, view):]
            except BlockingIOError:
                select.select([], [target], [])
            except OSError:
                broken = True


uid, gid = (int(n) for n in sys.argv[1].split(":"))
relayed = sys.argv[2] == "--relay"
command = sys.argv[3:] if relayed else sys.argv[2:]
pipes = [os.pipe() for _ in (1, 2)] if relayed else []

FORWARD = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}
WAITED = FORWARD | {signal.SIGCHLD}
signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    for fd, (_, write) in zip((1, 2), pipes):
        os.dup2(write, fd)
    for read, write in pipes:
        os.close(read)
        os.close(write)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        # Groups first: setting the uid gives up the right to change them.
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        print(f"cannot become the job's user {uid}:{gid}: {e}", file=sys.stderr, flush=True)
        os._exit(126)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"cannot run {command[0]}: {e}", file=sys.stderr, flush=True)
        os._exit(127)
# The relays start with every waited signal blocked (threads inherit the mask), so the signals
# reach sigwaitinfo below.
relays = []
for fd, (read, write) in zip((1, 2), pipes):
    os.close(write)
    relays.append(threading.Thread(target=relay, args=(read, fd), daemon=True))
    relays[-1].start()
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
# What the child wrote is in the pipes (at most a pipe's worth each): copy it out. A process
# the child left behind may hold a pipe open, so the wait is bounded; it dies with PID 1.
for thread in relays:
    thread.join(timeout=5)
if os.WIFSIGNALED(status):
    sys.exit(128 + os.WTERMSIG(status))
sys.exit(os.WEXITSTATUS(status))
