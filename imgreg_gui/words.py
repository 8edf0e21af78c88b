"""Counted nouns as people write them: ``1 item``, ``2 items``, ``1,234 groups``."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` (``many``, else ``word + 's'``, unless ``n`` is 1), with thousands separators."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"
