from collections import Counter
import re

_WORD = re.compile(r"\w+", re.UNICODE)


def word_counts(text: str) -> Counter:
    return Counter(word.casefold() for word in _WORD.findall(text))
