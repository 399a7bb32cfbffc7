class Table:
    def __init__(self, header, rows):
        self.header = list(header)
        self.rows = [list(r) for r in rows]

    def column(self, name):
        i = self.header.index(name)
        return [r[i] for r in self.rows]

    def to_text(self, sep=","):
        return "\n".join(sep.join(r) for r in [self.header] + self.rows) + "\n"

    @classmethod
    def from_text(cls, text, sep=","):
        lines = [line.split(sep) for line in text.splitlines() if line]
        return cls(lines[0], lines[1:])
