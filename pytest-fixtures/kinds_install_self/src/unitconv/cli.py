import sys

from unitconv import convert


def main(argv=None):
    value, src, dst = (argv if argv is not None else sys.argv[1:])
    print(f"{convert(float(value), src, dst):.2f} {dst}")
    return 0
