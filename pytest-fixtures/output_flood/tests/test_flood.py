import sys

LINES = 3_000_000
BATCH = 10_000
PAD = "x" * 85  # "flood 0000001 " (14) + 85 + newline = 100 bytes


def test_output_flood(capsys):
    with capsys.disabled():
        write = sys.stdout.write
        for start in range(1, LINES + 1, BATCH):
            write("".join(f"flood {i:07d} {PAD}\n" for i in range(start, start + BATCH)))
        write("flood done\n")
        sys.stdout.flush()
