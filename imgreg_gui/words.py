"""Words as people write them: counted nouns (``1 item``, ``2 items``, ``1,234 groups``), tooltips in lines."""

from __future__ import annotations

import textwrap


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` (``many``, else ``word + 's'``, unless ``n`` is 1), with thousands separators."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def tip(text: str, width: int = 64) -> str:
    """A tooltip in lines of at most ``width`` characters (Qt shows plain text on one line however long)."""
    return "\n".join(textwrap.fill(part, width) for part in text.split("\n"))
