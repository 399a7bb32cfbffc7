class Payment:
    def __init__(self, cents):
        self.cents = cents
        self.captured = 0
        self.refunded = 0
        self.void = False

    def capture(self, cents=None):
        cents = self.cents if cents is None else cents
        if cents > self.cents - self.captured:
            raise ValueError("cannot capture more than authorized")
        self.captured += cents

    def refund(self, cents):
        if cents > self.captured - self.refunded:
            raise ValueError("cannot refund more than captured")
        self.refunded += cents

    def cancel(self):
        if self.captured:
            raise ValueError("captured payments cannot be voided")
        self.void = True


def settle(amounts):
    # Known bug: rounds each amount to whole euros before adding.
    return sum(round(a / 100) * 100 for a in amounts)
