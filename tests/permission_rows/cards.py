"""Permission-matrix rows for the cards pages (see tests/permission_rows/__init__.py)."""

EXPECTED = {
    # agent cards and rollout plans (issue 8, items 1-3)
    ("GET", "agents:card", "agent"):              [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "agents:card", "other"):              [302, 404, 404, 200, 404, 404, 200, 200],
    ("GET", "agents:plan", "agent"):              [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "agents:plan", "other"):              [302, 404, 404, 200, 404, 404, 200, 200],
    ("POST", "agents:plan-tick", "agent"):        [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:plan-tick", "other"):        [302, 404, 404, 403, 404, 404, 403, 302],
    # policy versions and the simulator (issue 8, items 4-5)
    ("GET", "agents:policy-version", "agent"):    [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "agents:policy-version", "other"):    [302, 404, 404, 200, 404, 404, 200, 200],
    ("GET", "agents:simulate", "agent"):          [302, 404, 403, 404, 403, 200, 403, 200],
    ("GET", "agents:simulate", "other"):          [302, 404, 404, 403, 404, 404, 403, 200],
    ("POST", "agents:simulate", "agent"):         [302, 404, 403, 404, 403, 200, 403, 200],
    ("POST", "agents:simulate-preview", "agent"): [302, 404, 403, 404, 403, 200, 403, 200],
    ("POST", "agents:simulate-preview", "other"): [302, 404, 404, 403, 404, 404, 403, 200],
    ("POST", "agents:simulate-try-draft", "agent"): [302, 404, 403, 404, 403, 200, 403, 200],
    ("POST", "agents:simulate-try-draft", "other"): [302, 404, 404, 403, 404, 404, 403, 200],
}
POST_DATA = {
    "agents:plan-tick": {"done": "1"},
    "agents:simulate": {"operation": "lookup", "kind": "read"},
    "agents:simulate-preview": {"draft": "access", "max_kind": "read"},
    "agents:simulate-try-draft": {"draft": "access", "max_kind": "read",
                                  "try-operation": "lookup", "try-kind": "read"},
}
PART_OF_AGENT = {
    # a task owners tick by hand
    "agents:plan-tick": lambda agent: agent.rollout_tasks.get(key="workflow"),
}
URL_ARGS = {
    "agents:policy-version": lambda agent: [agent.slug, 1],  # registering made version 1
}
NOT_IN_TABLE = set()
