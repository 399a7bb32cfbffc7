"""A double-entry ledger.

>>> book = Ledger()
>>> book.post("cash", "sales", 250)
>>> book.balance("cash"), book.balance("sales")
(250, -250)
"""

from ledger.core import Ledger, UnbalancedError

__all__ = ["Ledger", "UnbalancedError"]
