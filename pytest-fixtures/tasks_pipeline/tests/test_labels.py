from shelf.labels import welcome


def test_the_label_greets_with_the_installed_package():
    assert welcome("Zoë", "fr") == "Bonjour, Zoë! Welcome to the shelf."
