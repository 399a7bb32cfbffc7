import sys


def test_many_lines(capsys):
    with capsys.disabled():
        for start in range(1, 200_001, 10_000):
            sys.stdout.write("".join(f"line {i:06d}\n" for i in range(start, start + 10_000)))
            sys.stdout.flush()
