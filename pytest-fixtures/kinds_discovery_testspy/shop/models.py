class Cart:
    def __init__(self):
        self.lines = {}

    def add(self, product, unit_cents, quantity=1):
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        price, count = self.lines.get(product, (unit_cents, 0))
        self.lines[product] = (price, count + quantity)

    def remove(self, product):
        self.lines.pop(product, None)

    def total(self):
        return sum(price * count for price, count in self.lines.values())
