"""The API's JSON parser: DRF's, refusing text that PostgreSQL cannot store (NUL, unpaired surrogates)."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate, e.g. "\udb8a"
        return False
    return True


def _first_unstorable(value, path: str = "") -> str | None:
    """The path of the first string (key or value) that PostgreSQL would refuse, or None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                return where or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _storable(key):
                    return where or "body"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
    return None


class StrictJSONParser(JSONParser):
    """JSON whose strings PostgreSQL can store: a NUL character or an unpaired surrogate is a 400, not a 500.

    Checked once on the parsed body, so every endpoint (and every field, metadata included) is covered.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        where = _first_unstorable(data)
        if where is not None:
            raise ParseError(f"JSON parse error - {where}: text may not contain NUL characters or unpaired surrogates.")
        return data
