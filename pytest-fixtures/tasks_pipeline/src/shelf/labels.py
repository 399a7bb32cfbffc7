from greetkit import greet


def welcome(reader, lang="en"):
    """The label on the shelf for a reader, in their language."""
    return greet(reader, lang) + " Welcome to the shelf."
