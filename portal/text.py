"""Checks on text before it reaches the database."""

from typing import Any


def contains_nul(value: Any) -> bool:
    """True if a NUL character hides anywhere in `value` (strings, dict keys and values, lists):
    PostgreSQL cannot store NUL in text or JSON, so such input is refused with a clear message."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False
