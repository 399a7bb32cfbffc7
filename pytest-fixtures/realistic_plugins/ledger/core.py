from collections import defaultdict


class UnbalancedError(ValueError):
    pass


class Ledger:
    """Accounts and postings; every posting debits one account and credits another.

    >>> book = Ledger()
    >>> book.post("bank", "equity", 1000)
    >>> book.post("rent", "bank", 400)
    >>> sorted(book.accounts())
    ['bank', 'equity', 'rent']
    >>> book.trial_balance()
    0
    """

    def __init__(self):
        self._balances = defaultdict(int)
        self.postings = []

    def post(self, debit, credit, amount, when=None):
        if amount <= 0:
            raise UnbalancedError(f"amount must be positive, got {amount}")
        if debit == credit:
            raise UnbalancedError("debit and credit must differ")
        self._balances[debit] += amount
        self._balances[credit] -= amount
        self.postings.append((when, debit, credit, amount))

    def balance(self, account):
        return self._balances.get(account, 0)

    def accounts(self):
        return list(self._balances)

    def trial_balance(self):
        return sum(self._balances.values())

    def split(self, amount, parts):
        """Split an amount in cents into parts that differ by at most one cent.

        >>> Ledger().split(100, 3)
        [34, 33, 33]
        """
        base, extra = divmod(amount, parts)
        return [base + 1 if i < extra else base for i in range(parts)]
