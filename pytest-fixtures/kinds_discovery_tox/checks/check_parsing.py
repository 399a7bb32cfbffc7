from csvtool import Table


def check_from_text():
    table = Table.from_text("x,y\n1,2\n3,4\n")
    assert table.column("y") == ["2", "4"]


def check_blank_lines_are_ignored():
    assert Table.from_text("x\n\n1\n\n").rows == [["1"]]


def test_named_like_a_default_test_but_not_collected():
    raise AssertionError("python_functions = check_*: test_* is not collected here")
