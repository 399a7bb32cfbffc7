#!/usr/bin/env python3
"""Command-line entry point of the shop (a stand-in for Django's manage.py)."""
import sys

from shop.models import Cart


def main(argv):
    if argv[1:] == ["demo"]:
        cart = Cart()
        cart.add("Crêpe", 350, 2)
        print(cart.total())
        return 0
    print("usage: manage.py demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
