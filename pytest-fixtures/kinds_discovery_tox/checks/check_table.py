from csvtool import Table


def check_column(people):
    assert people.column("city") == ["Genève", "Malmö", "北京"]


def check_round_trip(people, sep):
    text = people.to_text(sep)
    assert Table.from_text(text, sep).rows == people.rows


def helper_not_collected():
    raise AssertionError("python_functions = check_*: this is not a test")


class CheckTable:
    def check_header(self, people):
        assert people.header == ["name", "city"]

    def check_empty(self):
        assert Table(["a"], []).to_text() == "a\n"
