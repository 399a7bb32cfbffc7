import os

MAX_CHILDREN = 100_000


def test_fork_is_limited():
    # Children block on a pipe so they all stay alive; closing it lets them exit.
    r, w = os.pipe()
    children = []
    error = None
    try:
        for _ in range(MAX_CHILDREN):
            try:
                pid = os.fork()
            except OSError as e:  # BlockingIOError (EAGAIN) when the pids limit is hit
                error = e
                break
            if pid == 0:
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            children.append(pid)
    finally:
        os.close(w)
        for pid in children:
            os.waitpid(pid, 0)
    print(f"forked {len(children)} children, then: {error!r}")
    assert isinstance(error, OSError), f"forked {len(children)} children without hitting a limit"
