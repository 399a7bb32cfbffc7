import sys


def test_million_lines(capsys):
    with capsys.disabled():
        write = sys.stdout.write
        for start in range(1, 1_000_001, 10_000):
            write("".join(f"line {i:07d}\n" for i in range(start, start + 10_000)))
        sys.stdout.flush()
