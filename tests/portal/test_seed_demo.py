"""seed_demo: the demo cast and demo/registry.yaml, loaded idempotently through apply_agents."""

import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents import registry_yaml, services
from agents.models import Agent, DataSource, Guardrail, RollbackStep, System, SystemAccess
from portal.management.commands.seed_demo import CAST, DEMO_PASSWORD, DEMO_REGISTRY
from portal.models import AuditEvent, User
from portal.permissions import has_agent_perm, visible_agents
from reviews.models import ActionRequest
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
DEMO_AGENTS = ["account-research", "campaign-segments", "crm-hygiene", "kpi-reporter",
               "refund-replies"]


@pytest.fixture(autouse=True)
def _debug(settings):
    settings.DEBUG = True  # seed_demo refuses to hand out public passwords otherwise


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def state() -> dict:
    models = [AuditEvent, User, Group, Agent, System, DataSource, SystemAccess, Guardrail,
              RollbackStep, UserObjectPermission, GroupObjectPermission,
              User.groups.through, Agent.pausers.through, Agent.sources.through]
    counts = {model._meta.label: model.objects.count() for model in models}
    counts["agents updated"] = sorted(Agent.objects.values_list("slug", "updated_at"))
    return counts


def test_seed_demo_creates_the_cast_and_the_demo_registry():
    out = seed()

    users = {u.username: u for u in User.objects.all()}
    assert set(users) == {person.username for person in CAST}
    assert all(user.check_password(DEMO_PASSWORD) for user in users.values())
    assert users["admin"].is_superuser and users["admin"].is_staff
    assert users["rachel"].groups.filter(name="RevOps").exists()
    assert set(Group.objects.get(name="Managers").user_set.values_list("username", flat=True)
               ) == {"maria"}

    assert set(System.objects.values_list("slug", flat=True)) == {
        "crm", "helpdesk", "billing", "knowledge-base", "marketing-automation"}
    sources = list(DataSource.objects.all())
    assert any(s.is_stale(timezone.now()) for s in sources)
    assert any(not s.approved for s in sources)
    assert any(s.maintainer is None for s in sources)

    agents = {a.slug: a for a in Agent.objects.all()}
    assert sorted(agents) == DEMO_AGENTS
    assert {slug: (a.status, a.autonomy_level) for slug, a in agents.items()} == {
        "account-research": ("live", 1), "crm-hygiene": ("live", 2),
        "refund-replies": ("pilot", 2), "campaign-segments": ("pilot", 1),
        "kpi-reporter": ("paused", 1)}
    assert agents["kpi-reporter"].pause_reason
    for agent in agents.values():  # fully configured
        assert agent.guardrails.count() >= 3
        assert agent.rollback_steps.exists() and agent.accesses.exists()
        assert agent.max_writes_per_hour and agent.monthly_cost_budget
        assert all(agent.owners.values())
        missing = services.agent_missing_for(agent, "live")
        if agent.status == "pilot":  # part-way through the 30-day plan, the only thing left
            assert len(missing) == 1 and missing[0].startswith("its rollout plan complete")
        else:
            assert not missing
    assert agents["crm-hygiene"].accesses.get(system__slug="crm").max_kind == "execute"
    assert agents["crm-hygiene"].guardrails.filter(
        field="changes.stage", operator="changed", effect="review").exists()
    assert agents["refund-replies"].guardrails.filter(
        field="amount", operator="gt", value=500, route_to_group__name="Managers").exists()
    assert set(agents["campaign-segments"].accesses.values_list("max_kind", flat=True)) <= {
        "read", "recommend"}

    refunds = agents["refund-replies"]
    assert has_agent_perm(users["bob"], "agents.change_agent", refunds)
    assert has_agent_perm(users["olivia"], "agents.pause_agent", refunds)
    assert has_agent_perm(users["rob"], "agents.review_agent", refunds)
    assert has_agent_perm(users["maria"], "agents.review_agent", refunds)
    assert not has_agent_perm(users["maria"], "agents.review_agent", agents["crm-hygiene"])
    assert visible_agents(users["rachel"]).count() == 5
    assert not visible_agents(users["victor"]).exists()

    setup = AuditEvent.objects.exclude(verb="action.proposed")
    assert {e.actor_label for e in setup} == {"system"}
    # the demo's proposals went through the real gate, audited as the agents themselves
    proposals = AuditEvent.objects.filter(verb="action.proposed")
    assert {e.actor_label for e in proposals} == {
        "agent:refund-replies", "agent:crm-hygiene", "agent:account-research",
        "agent:kpi-reporter"}
    assert ActionRequest.objects.filter(status="pending").count() == 3
    assert "+ agent refund-replies" in out
    assert "admin     admin (superuser, /admin/)" in out
    assert out.rstrip().splitlines()[-1].split() == ["victor", "viewer:", "no", "agents",
                                                     DEMO_PASSWORD]


def test_a_second_run_changes_nothing():
    seed()
    before = state()
    out = seed()
    assert "already loaded" in out
    assert state() == before


def test_reset_reapplies_the_file_and_is_idempotent_too():
    seed()
    before = state()
    assert "nothing to change" in seed("--reset")
    assert state() == before

    agent = Agent.objects.get(slug="refund-replies")
    services.agent_update(actor=None, agent=agent, name="Renamed in the portal")
    assert "already loaded" in seed()  # a restart keeps what was changed in the portal
    assert Agent.objects.get(slug="refund-replies").name == "Renamed in the portal"
    out = seed("--reset")
    assert "~ agent refund-replies: name 'Renamed in the portal' → 'Refund replies'" in out
    assert Agent.objects.get(slug="refund-replies").name == "Refund replies"


def test_existing_users_are_left_as_they_are():
    bob = UserFactory(username="bob", first_name="Robert")
    bob.set_password("bobs own password")
    bob.save()
    seed()
    bob.refresh_from_db()
    assert bob.first_name == "Robert"
    assert bob.check_password("bobs own password")
    assert not bob.groups.exists()
    assert Agent.objects.get(slug="crm-hygiene").business_owner == bob


def test_the_demo_file_dry_runs_clean_and_leaves_nothing_behind():
    seed()
    before = state()
    out = io.StringIO()
    call_command("apply_agents", str(DEMO_REGISTRY), "--dry-run", stdout=out)
    assert "Dry run: 0 changes" in out.getvalue()
    assert state() == before
    # The demo exports and re-applies as a no-op as well.
    registry = registry_yaml.parse(registry_yaml.export())
    assert registry_yaml.apply(registry) == []


def test_refuses_to_run_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=1"):
        seed()
    assert not User.objects.exists()
    seed("--force")
    assert User.objects.filter(username="admin", is_superuser=True).exists()
