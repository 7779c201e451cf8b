"""The agent card: plain sentences from the gate's own policy snapshot, so it cannot disagree
with what the gate enforces (checked for every demo agent, guardrail by guardrail)."""

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from agents import card, services
from agents.models import AccessKind, Agent, Guardrail
from agents.policy import Action, Counters, GuardrailRule, decide
from agents.snapshots import build_snapshot
from portal.models import User
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo as seed_demo ships it, loaded once for the module and rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic(), override_settings(DEBUG=True):
        call_command("seed_demo", stdout=io.StringIO())
        yield {agent.slug: agent for agent in Agent.objects.all()}
        transaction.set_rollback(True)


@pytest.fixture
def admin_client(client, demo):
    client.force_login(User.objects.get(username="admin"))
    return client


def card_page(client, slug: str) -> str:
    response = client.get(reverse("agents:card", args=[slug]))
    assert response.status_code == 200
    return response.content.decode()


def names() -> dict[str, str]:
    from agents.models import System

    return dict(System.objects.values_list("slug", "name"))


def test_each_demo_card_states_every_guardrail_and_every_access(demo, admin_client):
    assert len(demo) == 5
    for slug, agent in demo.items():
        body = card_page(admin_client, slug)
        policy = build_snapshot(agent.pk)
        guardrails = list(Guardrail.objects.filter(agent=agent).select_related("system"))
        assert len(policy.guardrails) == len(guardrails) >= 3
        for guardrail in guardrails:
            rule = next(r for r in policy.guardrails if r.id == guardrail.pk)
            sentence = card.guardrail_sentence(rule, names())
            assert escape(sentence) in body, (slug, sentence)
            # the sentence carries the rule's own words, not a paraphrase that could drift
            assert sentence.startswith(f"{guardrail.name}: ")
            if guardrail.system_id:
                assert f"in {guardrail.system.name}" in sentence
            if guardrail.operation:
                assert f"for {guardrail.operation}" in sentence
            if guardrail.value is not None:
                value = guardrail.value
                shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                assert shown in sentence
            assert ("it is blocked" in sentence) == (guardrail.effect == "block")
            if guardrail.route_to_group_id:
                assert f"a member of {guardrail.route_to_group.name} must approve" in sentence
        assert body.count('<span class="badge effect-') == len(guardrails)

        accesses = list(agent.accesses.select_related("system"))
        assert accesses
        for access in accesses:
            assert escape(card.access_sentence(access.system.name, access.max_kind)) in body
            row = body.split(f'<th scope="row">{access.system.name}</th>')[1].split("</tr>")[0]
            allowed = access.allowed_kinds
            for kind in AccessKind.values:
                said = f"may {kind}" if kind in allowed else f"may not {kind}"
                assert f'<span class="visually-hidden">{said}</span>' in row, (slug, kind)

        for source in agent.sources.all():
            line = next(line for line in card.build_card(policy, names(), timezone.now()).sources
                        if line.slug == source.slug)
            assert line.approved == source.approved
            assert line.fresh == (not source.is_stale())
            assert escape(line.sentence) in body

        assert f"{reverse('incidents:create')}?agent={slug}" in body
        assert escape(agent.business_outcome) in body


def _firing_value(operator: str, value):
    if operator in ("eq", "gte", "lte"):
        return value
    if operator == "gt":
        return value + 1
    if operator == "lt":
        return value - 1
    if operator == "ne":
        return value + 1 if isinstance(value, int | float) else f"{value}-other"
    if operator == "in":
        return value[0]
    if operator == "contains":
        return f"criteria with {value} in it"
    raise AssertionError(operator)


def _firing_action(rule: GuardrailRule, access: dict) -> Action:
    """An action that meets the rule's condition in the rule's scope."""
    fields = {"system": rule.system or next(iter(access)), "operation": rule.operation or "probe",
              "kind": "read", "changes": {}}
    if rule.field.startswith("changes."):
        key = rule.field.removeprefix("changes.")
        fields["changes"] = {key: "new" if rule.operator == "changed"
                             else _firing_value(rule.operator, rule.value)}
    else:
        fields[rule.field] = _firing_value(rule.operator, rule.value)
    return Action(request_id="probe", **fields)


def test_each_guardrail_sentence_says_what_the_gate_does_with_it(demo):
    for agent in demo.values():
        policy = build_snapshot(agent.pk)
        lines = card.build_card(policy, names(), timezone.now()).guardrails
        for rule, line in zip(policy.guardrails, lines, strict=True):
            decision = decide(policy, _firing_action(rule, policy.access), Counters(),
                              timezone.now())
            assert rule.id in decision.fired_guardrail_ids, rule.name
            reason = next(r for r in decision.reasons
                          if r.message.startswith(f"Guardrail '{rule.name}'"))
            if line.effect == "block":
                assert reason.message.endswith("→ block")
                assert line.sentence.endswith("it is blocked.")
            elif rule.route_to_group:
                assert reason.message.endswith(f"→ review by {rule.route_to_group}")
                assert line.sentence.endswith(f"a member of {rule.route_to_group} must approve "
                                              "it first.")
            else:
                assert reason.message.endswith("→ review")
                assert line.sentence.endswith("a person must approve it first.")


def test_the_card_shows_what_the_demo_sources_are(demo, admin_client):
    body = card_page(admin_client, "campaign-segments")
    assert ("Web analytics export: not approved, so an action that cites it is blocked."
            in body)
    body = card_page(admin_client, "kpi-reporter")
    assert ("Finance data warehouse: approved but stale, so an action that cites it goes to a "
            "person." in body)
    assert "It is paused: every action it proposes is blocked until it is resumed." in body


def test_the_card_says_who_owns_and_who_may_pause(demo, admin_client):
    body = card_page(admin_client, "refund-replies")
    assert "<strong>Business owner</strong> (the outcome): Bob Brown" in body
    assert "its owners, Olivia Okafor and the members of Admins." in body
    assert "L2: low-risk actions run on their own" in body
    assert "20% of the actions it executes are picked for a person to review afterwards." in body
    assert "Blast radius: after 100 executed actions in an hour" in body
    assert "Budget: once $500.00 is spent in a month, every action waits for a person." in body


def test_the_card_follows_a_policy_change_at_once(client):
    owner = User.objects.create_user("owner-card", password="x")
    agent = make_agent(slug="refunds", owner=owner, ready=True)
    client.force_login(owner)
    before = card_page(client, agent.slug)
    assert "Big refunds: when the amount is more than 500, a person must approve it first." in (
        before)
    guardrail = agent.guardrails.get(name="Big refunds")
    services.guardrail_update(actor=owner, guardrail=guardrail, value=900, effect="block")
    after = card_page(client, agent.slug)
    assert "Big refunds: when the amount is more than 900, it is blocked." in after
    assert "more than 500" not in after


def test_an_agent_with_nothing_configured_gets_an_honest_card(client):
    owner = User.objects.create_user("owner-bare", password="x")
    agent = make_agent(slug="bare", owner=owner)
    client.force_login(owner)
    body = card_page(client, agent.slug)
    assert "It has no access to any system: the gate blocks everything it proposes." in body
    assert "No guardrails are set." in body
    assert "It is proposed: it may not act until its pilot starts." in body
    assert "Blast radius: no hourly limit on executed actions is set." in body


def test_the_card_prints_with_its_own_stylesheet_and_no_inline_style_or_script():
    css = (Path(settings.BASE_DIR) / "static" / "css" / "steward.css").read_text()
    print_rules = css.split("@media print")[1:]
    assert any(".agent-card" in rules for rules in print_rules)
    template = (Path(settings.BASE_DIR) / "templates" / "agents" / "card.html").read_text()
    assert "style=" not in template and "<style" not in template
    assert "<script" not in template and " on" + "click" not in template
