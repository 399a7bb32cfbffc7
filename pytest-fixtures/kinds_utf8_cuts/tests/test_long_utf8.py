import sys

UNIT = "é日🚀"  # 2 + 3 + 4 = 9 bytes
REPEAT = 5000


def line(r):
    return f"BEGIN{r}|" + "." * r + UNIT * REPEAT + f"|END{r}"


def test_long_multibyte_lines(capsys):
    for r in range(9):
        assert len(line(r).encode("utf-8")) == 7 + r + 9 * REPEAT + 5
    with capsys.disabled():
        sys.stdout.write("\n")
        for r in range(9):
            sys.stdout.write(line(r) + "\n")
        sys.stdout.flush()


def test_one_invalid_byte(capsys):
    with capsys.disabled():
        sys.stdout.flush()
        sys.stdout.buffer.write(b"\nBADBYTE|\xff|BADBYTE\n")
        sys.stdout.buffer.flush()
