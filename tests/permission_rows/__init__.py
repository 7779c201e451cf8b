"""Rows of the permission matrix (tests/agents/test_page_permissions.py), one module per area.

Each module may define EXPECTED, POST_DATA, PART_OF_AGENT, URL_ARGS and NOT_IN_TABLE with the
same meaning as in the matrix; the matrix merges them, so every page stays in one table.
"""

import importlib

AREAS = ["alerts", "access", "cards"]


def merged(name: str, empty):
    result = empty
    for area in AREAS:
        part = getattr(importlib.import_module(f"tests.permission_rows.{area}"), name, None)
        if part:
            result = result | part
    return result
