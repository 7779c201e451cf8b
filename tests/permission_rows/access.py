"""Permission-matrix rows for the access pages (see tests/permission_rows/__init__.py).

Access administration is for Admins only: everyone else gets 403 on every page, whatever
agent it names (the role is checked before the agent is looked up). The audit download is
for Admins and RevOps, like the audit trail.
"""

ADMIN_ONLY_GET = [302, 403, 403, 403, 403, 403, 403, 200]
ADMIN_ONLY_POST = [302, 403, 403, 403, 403, 403, 403, 302]  # done: back to the page

EXPECTED = {
    ("GET", "access:index", None): ADMIN_ONLY_GET,
    ("GET", "access:agent", "agent"): ADMIN_ONLY_GET,
    ("GET", "access:agent", "other"): ADMIN_ONLY_GET,
    ("POST", "access:grant", "agent"): ADMIN_ONLY_POST,
    ("POST", "access:grant", "other"): ADMIN_ONLY_POST,
    ("POST", "access:revoke", "agent"): ADMIN_ONLY_POST,
    ("POST", "access:revoke", "other"): ADMIN_ONLY_POST,
    ("GET", "access:users", None): ADMIN_ONLY_GET,
    ("GET", "access:user", None): ADMIN_ONLY_GET,
    ("GET", "access:bulk", None): ADMIN_ONLY_GET,
    ("POST", "access:bulk", None): ADMIN_ONLY_POST,
    ("GET", "audit-export", None): [302, 403, 403, 403, 403, 403, 200, 200],
}

POST_DATA = {
    "access:grant": {"user": "vic-viewer", "permission": "view_agent"},
    "access:revoke": {"user": "rita-reviewer", "permission": "review_agent"},
    "access:bulk": {"group": "Reviewers", "role": "viewer",
                    "agents": ["refund-replies", "crm-hygiene"]},
}

PART_OF_AGENT = {}

URL_ARGS = {
    "access:agent": lambda agent: [agent.slug],
    "access:grant": lambda agent: [agent.slug],
    "access:revoke": lambda agent: [agent.slug],
    "access:user": lambda agent: ["rita-reviewer"],
}

NOT_IN_TABLE = set()
