import time


def test_slow_lines(capsys):
    with capsys.disabled():
        for n in range(1, 26):
            print(f"tick {n}", flush=True)
            time.sleep(0.2)
