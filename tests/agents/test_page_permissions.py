"""Every page of the registry, as every role, on an agent they relate to and one they don't.

One table of expectations; a row is (method, url name, which agent) and the answer per role.
302 = redirected (to login for anonymous, or back to the page after a successful action).
"""

import pytest
from django.urls import get_resolver, reverse
from django.utils import timezone

from agents import services
from agents.models import SystemAccess
from metrics import selectors
from metrics.models import ImportBatch
from tests.factories import SystemFactory
from tests.permission_rows import merged

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "viewer", "reviewer", "other_reviewer", "pauser", "owner", "revops",
         "admin"]

# The role's own agent ("agent") and someone else's ("other").
EXPECTED = {
    ("GET", "agents:list", None):        [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "agents:create", None):      [302, 403, 403, 403, 403, 200, 403, 200],
    ("GET", "agents:detail", "agent"):   [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "agents:detail", "other"):   [302, 404, 404, 200, 404, 404, 200, 200],
    ("GET", "agents:edit", "agent"):     [302, 404, 403, 404, 403, 200, 403, 200],
    ("GET", "agents:edit", "other"):     [302, 404, 404, 403, 404, 404, 403, 200],
    ("POST", "agents:pause", "agent"):   [302, 404, 403, 404, 302, 302, 403, 302],
    ("POST", "agents:pause", "other"):   [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "agents:resume", "agent"):  [302, 404, 403, 404, 302, 302, 403, 302],
    ("POST", "agents:move", "agent"):    [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:retire", "agent"):  [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:retire", "other"):  [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "agents:token-create", "agent"): [302, 404, 403, 404, 403, 200, 403, 200],
    ("POST", "agents:token-create", "other"): [302, 404, 404, 403, 404, 404, 403, 200],
    ("POST", "agents:access-add", "agent"):   [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:guardrail-add", "other"): [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "agents:step-add", "agent"):     [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:access-remove", "agent"):    [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:guardrail-remove", "other"): [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "agents:step-remove", "agent"):      [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:token-revoke", "agent"):     [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:token-revoke", "other"):     [302, 404, 404, 403, 404, 404, 403, 302],
    ("GET", "reviews:item", "agent"):   [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "reviews:item", "other"):   [302, 404, 404, 200, 404, 404, 200, 200],
    ("POST", "reviews:approve", "agent"):     [302, 404, 302, 404, 403, 403, 403, 302],
    ("POST", "reviews:approve", "other"):     [302, 404, 404, 302, 404, 404, 403, 302],
    ("POST", "reviews:edit", "agent"):        [302, 404, 302, 404, 403, 403, 403, 302],
    ("POST", "reviews:reject", "agent"):      [302, 404, 302, 404, 403, 403, 403, 302],
    ("POST", "reviews:reject", "other"):      [302, 404, 404, 302, 404, 404, 403, 302],
    ("POST", "reviews:claim", "agent"):       [302, 404, 302, 404, 403, 403, 403, 302],
    ("POST", "reviews:unclaim", "agent"):     [302, 404, 302, 404, 403, 403, 403, 302],
    ("POST", "reviews:looks-right", "agent"): [302, 404, 302, 404, 403, 403, 403, 302],
    ("POST", "reviews:flag", "other"):        [302, 404, 404, 302, 404, 404, 403, 302],
    ("GET", "dashboard", None):          [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "audit", None):              [302, 403, 403, 403, 403, 403, 200, 200],
    ("GET", "reviews:inbox", None):          [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "metrics:fleet", None):    [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "metrics:export", None):   [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "metrics:agent", "agent"): [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "metrics:agent", "other"): [302, 404, 404, 200, 404, 404, 200, 200],
    ("POST", "metrics:target-save", "agent"): [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "metrics:target-save", "other"): [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "metrics:review", "agent"):      [302, 404, 403, 404, 403, 302, 302, 302],
    ("POST", "metrics:review", "other"):      [302, 404, 404, 403, 404, 404, 302, 302],
    ("GET", "imports:list", None):       [302, 200, 200, 200, 200, 200, 200, 200],
    ("POST", "imports:list", None):      [302, 403, 403, 403, 403, 400, 400, 400],  # no file
    ("GET", "imports:detail", "agent"):  [302, 404, 404, 404, 404, 200, 200, 200],
    ("GET", "imports:detail", "other"):  [302, 404, 404, 404, 404, 404, 200, 200],
    ("GET", "imports:errors", "agent"):  [302, 404, 404, 404, 404, 200, 200, 200],
    ("GET", "imports:errors", "other"):  [302, 404, 404, 404, 404, 404, 200, 200],
    ("GET", "incidents:list", None):     [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "incidents:create", None):   [302, 200, 200, 200, 200, 200, 200, 200],
    ("POST", "incidents:create", None):  [302, 404, 302, 404, 302, 302, 302, 302],  # "agent"
    ("GET", "incidents:detail", "agent"):  [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "incidents:detail", "other"):  [302, 404, 404, 200, 404, 404, 200, 200],
    ("POST", "incidents:update", "agent"): [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "incidents:update", "other"): [302, 404, 404, 403, 404, 404, 403, 302],
}

POST_DATA = {
    "agents:pause": {"reason": "Checking the kill switch"},
    "agents:move": {"to_status": "pilot"},
    "agents:retire": {"confirm": "on", "reason": "Replaced"},
    "agents:token-create": {"name": "ci"},
    "agents:access-add": {"max_kind": "read"},  # system filled in by the test
    "agents:guardrail-add": {"name": "Stage", "field": "changes.stage", "operator": "changed",
                             "effect": "review"},
    "agents:step-add": {"title": "Undo", "instructions": "Revert the record."},
    "reviews:reject": {"note": "Wrong deal"},
    "reviews:flag": {"category": "tone", "severity": "low", "description": "Curt."},
    "incidents:create": {"agent": "refund-replies", "category": "tone", "severity": "low",
                         "description": "The reply was curt."},
    "incidents:update": {"status": "investigating"},
    "metrics:target-save": {"metric": "accuracy", "target": "95", "human_baseline": "90"},
    "metrics:review": {"decision": "keep", "grain": "week", "period_start": (
        selectors.reporting_periods("week", timezone.localdate())[0].isoformat())},
}

def _token(agent):
    return services.agent_token_create(actor=None, agent=agent, name="t")[0]


def _incident(agent):
    from reviews.incidents import incident_report

    return incident_report(actor=agent.business_owner, agent=agent, category="other",
                           severity="low", description="It looked wrong.")


def _action_request(agent):
    from reviews import gate

    SystemAccess.objects.get_or_create(agent=agent, system=SystemFactory(slug="crm"),
                                       defaults={"max_kind": "read"})
    return gate.propose(token=_token(agent), proposal={
        "system": "crm", "operation": "lookup", "kind": "read"}).action


def _import_batch(agent):
    """A metric import uploaded by the agent's business owner (batches belong to uploaders)."""
    return ImportBatch.objects.create(format="csv", sha256=f"matrix-{agent.slug}",
                                      original_name="m.csv", created_by=agent.business_owner)


# Endpoints on one part of an agent: how to make that part.
PART_OF_AGENT = {
    "agents:access-remove": lambda agent: SystemAccess.objects.create(
        agent=agent, system=SystemFactory(slug="kb"), max_kind="read"),
    "agents:guardrail-remove": lambda agent: services.guardrail_create(
        actor=None, agent=agent, name="Any stage change", field="changes.stage",
        operator="changed"),
    "agents:step-remove": lambda agent: services.rollback_step_add(
        actor=None, agent=agent, title="Undo", instructions="Revert."),
    "agents:token-revoke": _token,
    "reviews:item": _action_request,
    **dict.fromkeys(["reviews:approve", "reviews:edit", "reviews:reject", "reviews:claim",
                     "reviews:unclaim", "reviews:looks-right", "reviews:flag"], _action_request),
    "incidents:detail": _incident,
    "incidents:update": _incident,
    **dict.fromkeys(["imports:detail", "imports:errors"], _import_batch),
}

# Pages tested elsewhere with their own rules (no login, Django's own views).
NOT_IN_TABLE = {"healthz", "login", "logout", "password_change", "password_change_done",
                "password_reset", "password_reset_done", "password_reset_confirm",
                "password_reset_complete"}

# Rows of the other areas (alerts, access administration, agent cards and plans).
EXPECTED |= merged("EXPECTED", {})
POST_DATA |= merged("POST_DATA", {})
PART_OF_AGENT |= merged("PART_OF_AGENT", {})
NOT_IN_TABLE |= merged("NOT_IN_TABLE", set())
# How to build a URL's arguments when it is not [agent slug] (+ the part's id).
URL_ARGS = merged("URL_ARGS", {})

CASES = [(method, name, which, role, expected[i])
         for (method, name, which), expected in EXPECTED.items()
         for i, role in enumerate(ROLES)]


@pytest.mark.parametrize(("method", "name", "which", "role", "expected"), CASES,
                         ids=[f"{m} {n} {w or ''} as {r}" for m, n, w, r, _ in CASES])
def test_page_answers_each_role(client, roles, method, name, which, role, expected):
    if role != "anonymous":
        client.force_login(getattr(roles, role))
    agent = getattr(roles, which) if which else None
    args = [agent.slug] if agent and name.startswith(("agents:", "metrics:")) else []
    if name in URL_ARGS:
        args = list(URL_ARGS[name](agent))
    elif name in PART_OF_AGENT:
        part = PART_OF_AGENT[name](agent)
        args.append(getattr(part, "public_id", part.pk))
    url = reverse(name, args=args)
    if method == "GET":
        response = client.get(url)
    else:
        data = dict(POST_DATA.get(name, {}))
        if name == "agents:access-add":
            data["system"] = SystemFactory(slug="crm").pk
        response = client.post(url, data)
    assert response.status_code == expected, response.content[:300]
    if role == "anonymous":
        assert response.url.startswith(reverse("login"))



def test_every_page_of_the_portal_is_in_the_table():
    """A new page cannot escape the matrix: every named URL is in it (or listed as exempt)."""
    resolver = get_resolver()
    names = {name for name in resolver.reverse_dict if isinstance(name, str)}
    for namespace, (_prefix, sub) in resolver.namespace_dict.items():
        # Django's admin checks is_staff itself; the API authenticates agents by token
        # (tests/reviews/test_api.py walks it).
        if namespace not in ("admin", "api"):
            names |= {f"{namespace}:{n}" for n in sub.reverse_dict if isinstance(n, str)}
    covered = {name for _method, name, _which in EXPECTED} | NOT_IN_TABLE
    assert names - covered == set()
