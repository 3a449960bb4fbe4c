"""The API's JSON parser: DRF's, refusing text that PostgreSQL cannot store (NUL, unpaired surrogates)."""

from __future__ import annotations

import io
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# In a valid JSON text, a NUL or a lone surrogate can only be written as an escape (\u0000, \udXXX): a body
# without one needs no walk through its strings (a 1,000-event list has 11,000 of them).
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


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
        raw = stream.read()
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        where = _first_unstorable(data) if _MAYBE_UNSTORABLE.search(raw) else None
        if where is not None:
            raise ParseError(f"JSON parse error - {where}: text may not contain NUL characters or unpaired surrogates.")
        return data
