def to_cents(amount: str) -> int:
    euros, _, cents = amount.partition(".")
    return int(euros) * 100 + int((cents + "00")[:2])


def split_evenly(total_cents: int, people: int) -> list:
    # Bug: the remainder is lost (10.00 between 3 people gives 3 x 3.33 = 9.99).
    share = total_cents // people
    return [share] * people


def format_cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} €"
