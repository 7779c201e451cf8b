"""Permission-matrix rows for the alerts pages (see tests/permission_rows/__init__.py)."""

EXPECTED = {
    ("GET", "alerts", None): [302, 200, 200, 200, 200, 200, 200, 200],
}
POST_DATA = {}
PART_OF_AGENT = {}
URL_ARGS = {}
NOT_IN_TABLE = set()
