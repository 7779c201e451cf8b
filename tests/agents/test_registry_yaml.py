"""Agents as code: apply_agents / export_agents, validation, dry run, idempotence, round trip."""

import copy
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents import registry_yaml, rollout_demo
from agents.models import Agent, DataSource, Guardrail, RollbackStep, System, SystemAccess
from portal import services as portal_services
from portal.models import AuditEvent, User
from portal.permissions import has_agent_perm
from portal.roles import ROLE_GROUPS
from tests.factories import UserFactory, complete_plan

pytestmark = pytest.mark.django_db

# The example of issue 2, point 8, word for word.
EXAMPLE = """\
systems:
  - {slug: helpdesk, name: Helpdesk}
data_sources:
  - {slug: ticket-history, name: Ticket history, approved: true, maintainer: dana,
     max_age: 7d, refreshed_at: "2026-11-20T08:00:00Z"}
groups:
  - {name: Managers, members: [maria]}
agents:
  - slug: refund-replies
    name: Refund replies
    business_outcome: Cut time to first refund reply to under one hour.
    definition_of_done: A reply draft is ready in the ticket for the agent to send.
    workflow: support
    autonomy_level: 2
    status: pilot
    owners: {business: bob, process: paula, technical: tim}
    pausers: [olivia]
    review_sample_rate: 0.2
    confidence: {review_below: 0.7, block_below: 0.3}
    max_writes_per_hour: 100
    monthly_cost_budget: 500
    review_cadence: weekly
    access: {helpdesk: draft, billing: read}
    sources: [ticket-history]
    guardrails:
      - {name: Refunds over 500 need a manager, system: helpdesk,
         operation: refund_reply, field: amount, operator: gt, value: 500,
         effect: review, route_to_group: Managers}
    rollback:
      - {title: Discard the draft, instructions: Delete the draft reply in the ticket.}
"""
PEOPLE = ("bob", "paula", "tim", "olivia", "dana", "maria", "rob", "rita")


@pytest.fixture
def people(db):
    return {name: UserFactory(username=name) for name in PEOPLE}


def example() -> dict:
    """The example as data, with billing declared (the issue's snippet leaves it out)."""
    data = yaml.safe_load(EXAMPLE)
    data["systems"].append({"slug": "billing", "name": "Billing"})
    return data


def write(tmp_path, data, name="registry.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def apply_agents(path: str, *args: str) -> str:
    out = io.StringIO()
    call_command("apply_agents", path, *args, stdout=out)
    return out.getvalue()


def apply_data(tmp_path, data, *args: str) -> str:
    return apply_agents(write(tmp_path, data), *args)


def apply_through_pilot(path: str) -> str:
    """apply_agents for a file whose new agents go live: the rollout plan gates pilot → live,
    so they land in pilot first and finish their plans as owners would, then the file runs."""
    staged = rollout_demo.staged(registry_yaml.load_file(path))
    if staged is not None:
        registry_yaml.apply(staged)
        for agent in Agent.objects.filter(status="pilot"):
            complete_plan(agent)
    return apply_agents(path)


def state() -> dict:
    """Row counts of everything apply may touch, and when each agent last changed."""
    models = [AuditEvent, Agent, System, DataSource, Group, SystemAccess, Guardrail,
              RollbackStep, UserObjectPermission, GroupObjectPermission,
              Agent.pausers.through, Agent.sources.through, User.groups.through]
    counts = {model._meta.label: model.objects.count() for model in models}
    counts["agents updated"] = sorted(Agent.objects.values_list("slug", "updated_at"))
    return counts


def fails_with(tmp_path, data, *expected: str) -> str:
    """Apply must fail, name every expected problem and change nothing at all."""
    before = state()
    with pytest.raises(CommandError) as err:
        apply_data(tmp_path, data)
    message = str(err.value)
    assert "nothing was changed" in message
    for text in expected:
        assert text in message
    assert state() == before
    return message


# --- applying ---------------------------------------------------------------------------------

def test_the_issue_example_creates_everything(tmp_path, people):
    out = apply_data(tmp_path, example())

    assert "+ agent refund-replies" in out and "Applied" in out
    source = DataSource.objects.get(slug="ticket-history")
    assert (source.name, source.approved, source.maintainer, source.max_age) == (
        "Ticket history", True, people["dana"], timedelta(days=7))
    assert source.refreshed_at == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert list(Group.objects.get(name="Managers").user_set.all()) == [people["maria"]]

    agent = Agent.objects.get(slug="refund-replies")
    assert (agent.status, agent.autonomy_level, agent.workflow) == ("pilot", 2, "support")
    assert (agent.business_owner, agent.process_owner, agent.technical_owner) == (
        people["bob"], people["paula"], people["tim"])
    assert list(agent.pausers.all()) == [people["olivia"]]
    assert (agent.review_sample_rate, agent.confidence_review_below,
            agent.confidence_block_below) == (0.2, 0.7, 0.3)
    assert (agent.max_writes_per_hour, agent.monthly_cost_budget) == (100, Decimal("500.00"))
    assert {(a.system.slug, a.max_kind) for a in agent.accesses.all()} == {
        ("helpdesk", "draft"), ("billing", "read")}
    assert [s.slug for s in agent.sources.all()] == ["ticket-history"]
    guardrail = agent.guardrails.get()
    assert (guardrail.name, guardrail.system.slug, guardrail.operation, guardrail.field,
            guardrail.operator, guardrail.value, guardrail.effect,
            guardrail.route_to_group.name) == (
        "Refunds over 500 need a manager", "helpdesk", "refund_reply", "amount", "gt", 500,
        "review", "Managers")
    step = agent.rollback_steps.get()
    assert (step.position, step.title) == (1, "Discard the draft")

    for owner in ("bob", "paula", "tim"):
        for perm in ("agents.view_agent", "agents.change_agent", "agents.pause_agent"):
            assert has_agent_perm(people[owner], perm, agent), (owner, perm)
    assert has_agent_perm(people["olivia"], "agents.pause_agent", agent)
    assert not has_agent_perm(people["olivia"], "agents.change_agent", agent)


def test_reviewers_and_review_groups_get_view_and_review(tmp_path, people):
    data = example()
    data["agents"][0]["reviewers"] = ["rob"]
    data["agents"][0]["review_groups"] = ["Managers"]
    apply_data(tmp_path, data)
    agent = Agent.objects.get(slug="refund-replies")
    for name in ("rob", "maria"):  # maria reviews through the Managers group
        assert has_agent_perm(people[name], "agents.view_agent", agent)
        assert has_agent_perm(people[name], "agents.review_agent", agent)
    assert not has_agent_perm(people["rita"], "agents.review_agent", agent)


def test_audit_events_are_written_by_the_system(tmp_path, people):
    apply_data(tmp_path, example())
    events = AuditEvent.objects.all()
    assert {(e.actor_type, e.actor_label, e.actor_user_id) for e in events} == {
        ("system", "system", None)}
    verbs = set(events.values_list("verb", flat=True))
    assert {"system.saved", "data_source.saved", "group.saved", "agent.created",
            "access.set", "guardrail.created", "rollback_step.added", "permission.granted",
            "agent.moved"} <= verbs
    moved = list(events.filter(verb="agent.moved").order_by("id").values_list("data", flat=True))
    assert [{k: v for k, v in d.items() if k != "policy_version_saved"} for d in moved] == [
        {"from": "proposed", "to": "pilot"}]


def test_applying_the_same_file_twice_changes_nothing(tmp_path, people):
    data = example()
    data["agents"][0].update(reviewers=["rob"], review_groups=["Managers"], status="paused",
                             paused_from="pilot", pause_reason="Wrong tone")
    path = write(tmp_path, data)
    apply_agents(path)
    before = state()
    out = apply_agents(path)
    assert out.strip() == f"{path}: nothing to change."
    assert state() == before


def test_dry_run_prints_the_changes_and_leaves_nothing_behind(tmp_path, people):
    before = state()
    out = apply_data(tmp_path, example(), "--dry-run")
    assert "+ system helpdesk" in out
    assert "+ agent refund-replies" in out
    assert "+ guardrail refund-replies/Refunds over 500 need a manager" in out
    assert "~ agent refund-replies: status proposed → pilot" in out
    assert "nothing was written" in out
    assert state() == before

    # On an existing agent it shows field changes and removals, and still writes nothing.
    apply_data(tmp_path, example())
    changed = example()
    agent = changed["agents"][0]
    agent["autonomy_level"] = 1
    agent["guardrails"] = [{"name": "Big refunds", "field": "amount", "operator": "gt",
                            "value": 900}]
    before = state()
    out = apply_data(tmp_path, changed, "--dry-run")
    assert "~ agent refund-replies: autonomy_level 2 → 1" in out
    assert "- guardrail refund-replies/Refunds over 500 need a manager" in out
    assert "+ guardrail refund-replies/Big refunds" in out
    assert state() == before
    # ...and exactly what a real run then does.
    real = apply_data(tmp_path, changed)
    assert real.splitlines()[:-1] == out.splitlines()[:-1]


def test_what_the_file_no_longer_lists_is_removed(tmp_path, people):
    data = example()
    agent = data["agents"][0]
    agent.update(reviewers=["rob", "rita"], status="proposed")
    agent["rollback"].append({"title": "Apologise", "instructions": "Send an apology."})
    apply_data(tmp_path, data)

    agent.update(reviewers=["rob"], pausers=[], access={"helpdesk": "recommend"},
                 rollback=[{"title": "Discard the draft",
                            "instructions": "Delete the draft reply."}])
    agent["guardrails"][0].update(name="Refunds over 700 need a manager", value=700)
    out = apply_data(tmp_path, data)

    assert "- access refund-replies/billing" in out
    assert "~ access refund-replies/helpdesk: draft → recommend" in out
    assert "- guardrail refund-replies/Refunds over 500 need a manager" in out
    assert "+ guardrail refund-replies/Refunds over 700 need a manager" in out
    assert "~ rollback refund-replies/1: instructions" in out
    assert "- rollback refund-replies/2: Apologise" in out
    assert "- reviewer refund-replies/rita" in out
    assert "~ agent refund-replies: pausers [olivia] → []" in out
    refunds = Agent.objects.get(slug="refund-replies")
    assert {(a.system.slug, a.max_kind) for a in refunds.accesses.all()} == {
        ("helpdesk", "recommend")}
    assert list(refunds.guardrails.values_list("name", "value")) == [
        ("Refunds over 700 need a manager", 700)]
    assert list(refunds.rollback_steps.values_list("position", "instructions")) == [
        (1, "Delete the draft reply.")]
    assert not has_agent_perm(people["rita"], "agents.view_agent", refunds)
    assert not has_agent_perm(people["olivia"], "agents.pause_agent", refunds)
    assert has_agent_perm(people["rob"], "agents.review_agent", refunds)


def test_owner_dropped_as_reviewer_keeps_sight_of_the_agent(tmp_path, people):
    data = example()
    data["agents"][0]["reviewers"] = ["bob"]
    apply_data(tmp_path, data)
    data["agents"][0]["reviewers"] = []
    apply_data(tmp_path, data)
    agent = Agent.objects.get(slug="refund-replies")
    assert not has_agent_perm(people["bob"], "agents.review_agent", agent)
    assert has_agent_perm(people["bob"], "agents.view_agent", agent)


def test_status_is_reached_through_the_lifecycle(tmp_path, people):
    data = example()
    agent = data["agents"][0]

    def moves() -> list:
        events = AuditEvent.objects.filter(verb__in=["agent.moved", "agent.paused",
                                                     "agent.resumed", "agent.retired"])
        return [(e.verb, e.data.get("to") or e.data.get("was") or e.data.get("from"))
                for e in events.order_by("id")]

    agent["status"] = "live"
    apply_through_pilot(write(tmp_path, data))
    assert moves() == [("agent.moved", "pilot"), ("agent.moved", "live")]

    agent.update(status="paused", pause_reason="Replies in the wrong language")
    out = apply_data(tmp_path, data)
    assert "~ agent refund-replies: status live → paused" in out
    refunds = Agent.objects.get(slug="refund-replies")
    assert (refunds.status, refunds.status_before_pause, refunds.pause_reason) == (
        "paused", "live", "Replies in the wrong language")

    # Lowering the status and dropping what pilot and live need, in one file.
    agent.update(status="proposed", guardrails=[], access={}, rollback=[])
    del agent["pause_reason"]
    apply_data(tmp_path, data)
    refunds.refresh_from_db()
    assert (refunds.status, refunds.guardrails.count(), refunds.accesses.count()) == (
        "proposed", 0, 0)
    assert moves()[2:] == [("agent.paused", "live"), ("agent.resumed", "live"),
                           ("agent.moved", "pilot"), ("agent.moved", "proposed")]

    agent["status"] = "retired"
    apply_data(tmp_path, data)
    assert Agent.objects.get(slug="refund-replies").status == "retired"
    assert apply_data(tmp_path, data).endswith("nothing to change.\n")
    agent["status"] = "proposed"
    fails_with(tmp_path, data,
               "agents[refund-replies].status: the agent is retired, and retired is final")


def test_new_agent_can_be_created_paused(tmp_path, people):
    data = example()
    data["agents"][0].update(status="paused", pause_reason="Waiting for legal")
    apply_data(tmp_path, data)
    agent = Agent.objects.get(slug="refund-replies")
    # Without paused_from a new agent is paused where it starts: in proposed.
    assert (agent.status, agent.status_before_pause, agent.pause_reason) == (
        "paused", "proposed", "Waiting for legal")


# --- a bad file changes nothing ----------------------------------------------------------------

def _with(change):
    data = example()
    change(data)
    return data


def _agent(**fields):
    return lambda data: data["agents"][0].update(fields)


def _guardrail(**fields):
    return lambda data: data["agents"][0]["guardrails"][0].update(fields)


BAD_FILES = {
    "unknown user": (
        _agent(owners={"business": "bobb", "process": "paula", "technical": "tim"}),
        "agents[refund-replies].owners.business: unknown user 'bobb'"),
    "unknown pauser": (
        _agent(pausers=["olivia", "olvia"]),
        "agents[refund-replies].pausers: unknown user 'olvia'"),
    "unknown system": (
        _agent(access={"hlpdesk": "draft"}),
        "agents[refund-replies].access.hlpdesk: unknown system 'hlpdesk'"),
    "bad access kind": (
        _agent(access={"helpdesk": "write"}),
        "agents[refund-replies].access.helpdesk: unknown access kind 'write'; use one of "
        "read, draft, recommend, execute"),
    "bad operator": (
        _guardrail(operator="greater"),
        "agents[refund-replies].guardrails[0].operator: unknown operator 'greater'; use one of "
        "changed, eq, ne, gt, gte, lt, lte, in, contains"),
    "value the operator cannot compare": (
        _guardrail(value="lots"),
        "agents[refund-replies].guardrails[0].value: 'gt' compares numbers"),
    "unknown route group": (
        _guardrail(route_to_group="Managerz"),
        "agents[refund-replies].guardrails[0].route_to_group: unknown group 'Managerz'"),
    "bad duration": (
        lambda data: data["data_sources"][0].update(max_age="7 days"),
        "data_sources[ticket-history].max_age: bad duration '7 days'; write it like 7d"),
    "naive timestamp": (
        lambda data: data["data_sources"][0].update(refreshed_at="2026-11-20T08:00:00"),
        "data_sources[ticket-history].refreshed_at: bad timestamp"),
    "unknown key": (
        lambda data: data["agents"][0].update(guardrail=data["agents"][0].pop("guardrails")),
        "agents[refund-replies].guardrail: unknown key; did you mean 'guardrails'?"),
    "unknown top-level key": (
        lambda data: data.update(agent=[]),
        "(file).agent: unknown key; did you mean 'agents'?"),
    "live without a guardrail": (
        _agent(status="live", guardrails=[]),
        "agents[refund-replies].status: cannot be live: it needs at least one guardrail"),
    "pilot without owners": (
        _agent(owners={"business": "bob"}),
        "agents[refund-replies].status: cannot be pilot: it needs a process owner and a "
        "technical owner"),
    "paused without a reason": (
        _agent(status="paused"),
        "agents[refund-replies].pause_reason: required when status is paused"),
    "autonomy out of range": (
        _agent(autonomy_level=5),
        "agents[refund-replies].autonomy_level: unknown autonomy level 5; use one of 1, 2, 3, 4"),
    "thresholds the wrong way round": (
        _agent(confidence={"review_below": 0.3, "block_below": 0.7}),
        "agents[refund-replies].confidence.block_below: 0.7 is above review_below"),
    "duplicate agent": (
        lambda data: data["agents"].append(copy.deepcopy(data["agents"][0])),
        "agents[refund-replies]: listed twice"),
    "missing name": (
        lambda data: data["systems"].append({"slug": "crm"}),
        "systems[crm].name: required"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_a_bad_file_names_entry_and_field_and_changes_nothing(tmp_path, people, case):
    change, expected = BAD_FILES[case]
    fails_with(tmp_path, _with(change), expected)


def test_every_problem_is_reported_at_once(tmp_path, people):
    data = example()
    data["agents"][0]["owners"]["business"] = "bobb"
    data["agents"][0]["guardrails"][0]["operator"] = "greater"
    data["data_sources"][0]["max_age"] = "a week"
    message = fails_with(tmp_path, data, "owners.business", "operator", "max_age")
    assert message.count("\n") == 3  # the header line and three problems


def test_a_key_given_twice_is_an_error(tmp_path, people):
    text = EXAMPLE.replace("    workflow: support\n", "    workflow: support\n    workflow: x\n")
    fails_with(tmp_path, text, "key 'workflow' is given twice")


def test_not_yaml_at_all_is_reported(tmp_path, people):
    fails_with(tmp_path, "agents: [\n", "not valid YAML")


def test_a_service_refusal_during_apply_rolls_everything_back(tmp_path, people):
    data = example()
    data["agents"][0]["status"] = "retired"
    apply_data(tmp_path, data)
    data["systems"].append({"slug": "crm", "name": "CRM"})
    data["agents"][0]["name"] = "Refund replies v2"  # valid YAML, but retired is final
    fails_with(tmp_path, data, "agents[refund-replies]: A retired agent cannot be changed.")
    assert not System.objects.filter(slug="crm").exists()


def test_a_non_admin_actor_is_refused_with_the_entry_named(people):
    registry = registry_yaml.parse(yaml.safe_dump(example()))
    with pytest.raises(registry_yaml.RegistryError) as err:
        registry_yaml.apply(registry, actor=people["bob"])
    assert err.value.messages[0].startswith("systems[helpdesk]: permission denied")
    assert not System.objects.exists()


# --- export ------------------------------------------------------------------------------------

def rich_registry() -> dict:
    """Every feature of the format: several agents in every status, all kinds of guardrail."""
    data = example()
    refunds = data["agents"][0]
    refunds.update(reviewers=["rob"], review_groups=["Managers"], description="Drafts replies.")
    refunds["guardrails"].append({"name": "Escalations", "field": "changes.tag",
                                  "operator": "in", "value": ["legal", "press"],
                                  "effect": "review", "route_to_group": "Managers"})
    refunds["rollback"].append({"title": "Apologise",
                                "instructions": "1. Find the ticket.\n2. Send an apology."})
    data["systems"].append({"slug": "crm", "name": "CRM", "description": "Sales pipeline."})
    data["data_sources"].append({"slug": "orphan", "name": "Orphan", "approved": False,
                                 "max_age": "1d12h"})
    data["groups"].append({"name": "Empty", "members": []})
    base = {"business_outcome": "Clean CRM.", "definition_of_done": "Record is valid.",
            "owners": {"business": "bob", "process": "paula", "technical": "tim"},
            "access": {"crm": "execute"},
            "guardrails": [{"name": "Stage", "system": "crm", "field": "changes.stage",
                            "operator": "changed", "effect": "review"}],
            "rollback": [{"title": "Restore", "instructions": "Restore from history."}]}
    data["agents"] += [
        {"slug": "crm-hygiene", "name": "CRM hygiene", "status": "live", "autonomy_level": 3,
         "review_cadence": "monthly", "monthly_cost_budget": 99.5, "pausers": ["olivia"],
         **copy.deepcopy(base)},
        {"slug": "kpi", "name": "KPI", "status": "paused", "paused_from": "pilot",
         "pause_reason": "Stale data.", **copy.deepcopy(base)},
        {"slug": "old", "name": "Old", "status": "retired", **copy.deepcopy(base)},
        {"slug": "idea", "name": "Idea", "max_writes_per_hour": 0},
    ]
    return data


def wipe_registry() -> None:
    """Empty the registry (not the users, not the role groups): a fresh installation."""
    UserObjectPermission.objects.all().delete()
    GroupObjectPermission.objects.all().delete()
    Agent.objects.all().delete()
    System.objects.all().delete()
    DataSource.objects.all().delete()
    Group.objects.exclude(name__in=ROLE_GROUPS).delete()


def test_export_then_apply_on_an_empty_registry_reproduces_it(tmp_path, people):
    apply_through_pilot(write(tmp_path, rich_registry()))
    exported = io.StringIO()
    call_command("export_agents", stdout=exported)
    first = yaml.safe_load(exported.getvalue())
    assert [a["slug"] for a in first["agents"]] == ["crm-hygiene", "idea", "kpi", "old",
                                                    "refund-replies"]

    wipe_registry()
    assert not Agent.objects.exists()
    apply_through_pilot(write(tmp_path, exported.getvalue(), "export.yaml"))
    again = io.StringIO()
    call_command("export_agents", stdout=again)
    assert yaml.safe_load(again.getvalue()) == first
    kpi = Agent.objects.get(slug="kpi")
    assert (kpi.status, kpi.status_before_pause, kpi.pause_reason) == (
        "paused", "pilot", "Stale data.")


def test_apply_export_apply_is_a_no_op(tmp_path, people):
    apply_through_pilot(write(tmp_path, rich_registry()))
    path = tmp_path / "export.yaml"
    call_command("export_agents", "-o", str(path), stderr=io.StringIO())
    before = state()
    assert apply_agents(str(path)).endswith("nothing to change.\n")
    assert state() == before


def test_export_reads_like_the_readme(tmp_path, people):
    apply_data(tmp_path, example())
    text = registry_yaml.export()
    assert "owners: {business: bob, process: paula, technical: tim}" in text
    assert "pausers: [olivia]" in text
    assert "max_age: 7d" in text
    assert "refreshed_at: '2026-11-20T08:00:00Z'" in text
    assert "Admins" not in text  # role groups are not part of the registry


# --- small parts -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "duration"), [
    ("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("1d12h", timedelta(days=1, hours=12)), ("45s", timedelta(seconds=45)),
])
def test_durations_round_trip(text, duration):
    assert registry_yaml.parse_duration(text) == duration
    assert registry_yaml.format_duration(duration) == text


@pytest.mark.parametrize("text", ["", "7", "7 days", "d", "1w", "-1d"])
def test_bad_durations_are_refused(text):
    assert registry_yaml.parse_duration(text) is None


def test_group_and_permission_services_are_for_admins_only(people, roles):
    agent = roles.agent
    for service, kwargs in (
            (portal_services.group_save, {"name": "Managers", "members": []}),
            (portal_services.agent_permission_grant,
             {"agent": agent, "perm": "review_agent", "user": people["rob"]}),
            (portal_services.agent_permission_revoke,
             {"agent": agent, "perm": "review_agent", "user": people["rob"]})):
        with pytest.raises(PermissionDenied):
            service(actor=roles.owner, **kwargs)
    granted = portal_services.agent_permission_grant(
        actor=roles.admin, agent=agent, perm=["view_agent", "review_agent"], user=people["rob"])
    assert granted == ["review_agent", "view_agent"]
    assert portal_services.agent_permission_grant(
        actor=roles.admin, agent=agent, perm="agents.review_agent", user=people["rob"]) == []
    event = AuditEvent.objects.filter(verb="permission.granted").latest("id")
    assert (event.actor_label, event.data) == (
        "ada-admin", {"user": "rob", "permissions": ["review_agent", "view_agent"]})
    assert portal_services.agent_permission_revoke(
        actor=None, agent=agent, perm="review_agent", user=people["rob"]) == ["review_agent"]
    assert AuditEvent.objects.latest("id").verb == "permission.revoked"
