"""Plain-English lists for the sentences the library writes (verdicts, notes, the tour).

>>> and_list(["#3", "#4", "#5"])
'#3, #4 and #5'
"""

from __future__ import annotations


def and_list(items: list) -> str:
    """'a', 'a and b', 'a, b and c' (items written with str)."""
    words = [str(item) for item in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
