"""Order totals, discounts and receipts."""


def total(lines):
    """The order's total in cents: `lines` holds (quantity, unit price in cents) pairs."""
    return sum(quantity * price for quantity, price in lines)


def discounted(cents, percent):
    """`cents` less `percent` per cent, rounded down (the bug: it should round half up)."""
    return cents * (100 - percent) // 100


def receipt(lines):
    """One receipt line per order line."""
    return "\n".join(
        f"line {i:05d}: {quantity} x {price} cents " + "." * 960
        for i, (quantity, price) in enumerate(lines)
    )


def header(shop):
    """The receipt's header; the shop's name is printed as given, escapes and all."""
    return f"\x1b[31m{shop}\x1b[0m\x07\x00"
