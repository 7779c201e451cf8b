"""Permission-matrix rows for the access pages (see tests/permission_rows/__init__.py)."""

EXPECTED = {}
POST_DATA = {}
PART_OF_AGENT = {}
URL_ARGS = {}
NOT_IN_TABLE = set()
