"""The simulator equals the live gate: replays of stored requests under the unchanged policy
change nothing, and under a changed policy give what the gate gives after the change."""

import random
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents import services, simulate, snapshots
from agents.models import Agent, Guardrail, PolicyVersion, System
from agents.policy import GuardrailRule
from portal.models import AuditEvent
from reviews import gate
from reviews.models import ActionRequest
from tests.factories import DataSourceFactory, SystemFactory, make_live_agent

pytestmark = pytest.mark.django_db

OUTCOMES = ("allow", "review", "block")


@pytest.fixture
def agent():
    agent = make_live_agent()  # L2; crm up to execute, helpdesk up to draft; two guardrails
    SystemFactory(slug="billing", name="Billing")  # exists, but the agent has no access
    stale = DataSourceFactory(slug="old-prices", name="Old prices", max_age=timedelta(days=1),
                              refreshed_at=timezone.now() - timedelta(days=9))
    agent.sources.add(stale)
    return services.agent_update(actor=None, agent=agent, review_sample_rate=0.3)


def proposals(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    made = []
    for n in range(count):
        system, kind = rng.choice([("crm", "execute"), ("crm", "execute"), ("crm", "read"),
                                   ("helpdesk", "draft"), ("helpdesk", "execute"),
                                   ("billing", "read")])
        changes = {"next_step": "call"}
        if rng.random() < 0.2:
            changes["stage"] = rng.choice(["won", "lost"])
        made.append({
            "system": system, "operation": rng.choice(["update_deal", "refund_reply"]),
            "kind": kind, "target": f"deal {n}", "summary": f"Proposal {n}",
            "changes": changes,
            "amount": rng.choice([None, round(rng.uniform(10, 900), 2)]),
            "currency": "EUR",
            "confidence": rng.choice([None, round(rng.uniform(0.1, 1.0), 2)]),
            "sources": rng.choice([[], ["crm-records"], ["old-prices"]]),
            "cost_usd": round(rng.uniform(0.001, 0.02), 4),
            "idempotency_key": f"{seed}-{n}",
        })
    return made


def propose_all(agent, items: list[dict]) -> list[ActionRequest]:
    token = services.agent_token_create(actor=None, agent=agent, name=f"t{len(items)}")[0]
    stored = []
    for proposal in items:
        gate.clear_caches()  # the month's spend exactly, as the replay counts it
        token.agent.refresh_from_db()
        stored.append(gate.propose(token=token, proposal=proposal).action)
    return stored


def current(agent) -> "snapshots.PolicySnapshot":
    agent.refresh_from_db()
    return snapshots.build_snapshot(agent.pk)


def test_unchanged_policy_changes_no_decision(agent):
    """Counters included: a write limit, a budget, a pause in the middle, L2 sampling."""
    # Only the 6 allowed writes can be sampled, each by its random request id: at the
    # fixture's 0.3, none was in 12% of runs; at 0.9, one run in a million.
    agent = services.agent_update(actor=None, agent=agent, max_writes_per_hour=6,
                                  monthly_cost_budget=1, review_sample_rate=0.9)
    items = proposals(300, seed=1)
    stored = propose_all(agent, items[:120])
    services.agent_pause(actor=None, agent=agent, reason="Checking")
    stored += propose_all(agent, items[120:150])
    services.agent_resume(actor=None, agent=agent)
    stored += propose_all(agent, items[150:])
    codes = {r["code"] for action in stored for r in action.reasons}
    assert {"blast_radius", "budget", "paused", "source_stale", "guardrail", "no_access",
            "access_exceeded", "confidence_block", "confidence_review"} <= codes
    assert any(action.sampled for action in stored)

    replay = simulate.replay(agent_id=agent.pk, draft=current(agent))

    assert replay.total == 300
    assert replay.changed == 0, replay.transitions()
    for before in OUTCOMES:
        assert replay.counts.get((before, before), 0) == sum(
            1 for action in stored if action.decision == before)


def _add_block_guardrail(agent):
    services.guardrail_create(actor=None, agent=agent, name="Over 300 is blocked",
                              field="amount", operator="gt", value=300, effect="block")


def _draft_block_guardrail(policy):
    return simulate.draft_with_guardrail(policy, GuardrailRule(
        id=0, name="Over 300 is blocked", field="amount", operator="gt", value=300,
        effect="block"))


def _raise_thresholds(agent):
    services.agent_update(actor=None, agent=agent, confidence_review_below=0.85,
                          confidence_block_below=0.5)


def _draft_thresholds(policy):
    return simulate.draft_with(policy, confidence_review_below=0.85, confidence_block_below=0.5)


def _give_billing_and_cut_crm(agent):
    services.system_access_set(actor=None, agent=agent, system=System.objects.get(slug="crm"),
                               max_kind="read")
    services.system_access_set(actor=None, agent=agent,
                               system=System.objects.get(slug="billing"), max_kind="execute")


def _draft_access(policy):
    billing = System.objects.get(slug="billing")
    draft = simulate.draft_with_access(policy, system_slug="crm",
                                       system_id=policy.system_ids["crm"], max_kind="read")
    return simulate.draft_with_access(draft, system_slug="billing", system_id=billing.pk,
                                      max_kind="execute")


def _lower_autonomy(agent):
    services.agent_update(actor=None, agent=agent, autonomy_level=1)


def _draft_autonomy(policy):
    return simulate.draft_with(policy, autonomy_level=1)


@pytest.mark.parametrize(("change", "draft"), [
    (_add_block_guardrail, _draft_block_guardrail),
    (_raise_thresholds, _draft_thresholds),
    (_give_billing_and_cut_crm, _draft_access),
    (_lower_autonomy, _draft_autonomy),
], ids=["guardrail", "thresholds", "access", "autonomy"])
def test_changed_policy_gives_what_the_live_gate_gives(agent, change, draft):
    items = proposals(200, seed=2)
    stored = propose_all(agent, items)

    replay = simulate.replay(agent_id=agent.pk, draft=draft(current(agent)))
    change(agent)
    again = propose_all(agent, [{**item, "idempotency_key": f"again-{item['idempotency_key']}"}
                                for item in items])

    live: dict[tuple[str, str], int] = {}
    for before, after in zip(stored, again, strict=True):
        live[(before.decision, after.decision)] = live.get(
            (before.decision, after.decision), 0) + 1
    assert replay.changed > 0  # the change matters, or the comparison proves little
    for before in OUTCOMES:
        for after in OUTCOMES:
            assert replay.counts.get((before, after), 0) == live.get((before, after), 0), (
                before, after, replay.transitions())
    for (before, after), examples in replay.examples.items():
        assert len(examples) == min(20, live[(before, after)])
        assert all(e.before == before and e.after == after and e.public_id for e in examples)


def test_replay_reads_only_the_last_30_days_and_writes_nothing(agent):
    stored = propose_all(agent, proposals(10, seed=3))
    ActionRequest.objects.filter(pk=stored[0].pk).update(
        created_at=timezone.now() - timedelta(days=31))
    counts = (ActionRequest.objects.count(), AuditEvent.objects.count(),
              PolicyVersion.objects.count())
    replay = simulate.replay(agent_id=agent.pk, draft=current(agent))
    assert replay.total == 9
    assert counts == (ActionRequest.objects.count(), AuditEvent.objects.count(),
                      PolicyVersion.objects.count())


def _login_owner(client, agent):
    client.force_login(agent.business_owner)


def test_preview_of_a_guardrail_draft_renders_the_matrix_without_saving(client, agent):
    propose_all(agent, proposals(60, seed=4))
    _login_owner(client, agent)
    edit_page = client.get(reverse("agents:edit", args=[agent.slug])).content.decode()
    preview_url = reverse("agents:simulate-preview", args=[agent.slug])
    assert edit_page.count(f'hx-post="{preview_url}"') == 3  # agent, access, guardrail forms
    counts = (Guardrail.objects.count(), PolicyVersion.objects.count(),
              AuditEvent.objects.count())
    response = client.post(reverse("agents:simulate-preview", args=[agent.slug]), {
        "draft": "guardrail", "name": "Over 300 is blocked", "field": "amount",
        "operator": "gt", "value": "300", "effect": "block"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = response.content.decode()
    expected = simulate.replay(agent_id=agent.pk,
                               draft=_draft_block_guardrail(current(agent)))
    assert f"<strong>{expected.changed}</strong> of 60 decisions" in page
    assert expected.changed > 0 and "<html" not in page  # a fragment for htmx
    assert counts == (Guardrail.objects.count(), PolicyVersion.objects.count(),
                      AuditEvent.objects.count())


def test_preview_of_an_invalid_draft_shows_the_errors(client, agent):
    _login_owner(client, agent)
    response = client.post(reverse("agents:simulate-preview", args=[agent.slug]), {
        "draft": "guardrail", "name": "Broken", "field": "amount", "operator": "gt",
        "value": "lots", "effect": "block"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "compares numbers: give a number" in response.content.decode()
    response = client.post(reverse("agents:simulate-preview", args=[agent.slug]),
                           {"draft": "access", "max_kind": "execute"})
    assert "System: This field is required." in response.content.decode()
    assert client.post(reverse("agents:simulate-preview", args=[agent.slug]),
                       {"draft": "nonsense"}).status_code == 400


def test_preview_of_the_edit_form_uses_its_thresholds(client, agent):
    propose_all(agent, proposals(60, seed=5))
    _login_owner(client, agent)
    form = {"name": agent.name, "business_outcome": agent.business_outcome,
            "definition_of_done": agent.definition_of_done, "workflow": "",
            "autonomy_level": 1, "business_owner": agent.business_owner.pk,
            "process_owner": agent.business_owner.pk,
            "technical_owner": agent.business_owner.pk, "review_sample_rate": 0.3,
            "confidence_review_below": 0.7, "confidence_block_below": 0.3,
            "review_cadence": "weekly", "sources": [s.pk for s in agent.sources.all()],
            "draft": "agent"}
    response = client.post(reverse("agents:simulate-preview", args=[agent.slug]), form)
    expected = simulate.replay(agent_id=agent.pk,
                               draft=simulate.draft_with(current(agent), autonomy_level=1))
    assert f"<strong>{expected.changed}</strong> of 60" in response.content.decode()
    assert Agent.objects.get(pk=agent.pk).autonomy_level == 2  # nothing saved
    form["confidence_block_below"] = "high"
    response = client.post(reverse("agents:simulate-preview", args=[agent.slug]), form)
    assert "cannot be previewed yet" in response.content.decode()


def test_try_an_action_answers_without_storing_anything(client, agent):
    _login_owner(client, agent)
    url = reverse("agents:simulate", args=[agent.slug])
    assert client.get(url).status_code == 200
    counts = (ActionRequest.objects.count(), AuditEvent.objects.count())
    response = client.post(url, {"system": "crm", "operation": "update_deal",
                                 "kind": "execute", "changes": '{"stage": "won"}'},
                           headers={"HX-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 200 and "effect-review" in page
    assert "Stage changes need approval" in page
    response = client.post(url, {"system": "crm", "operation": "update_deal",
                                 "kind": "execute", "changes": "{stage"})
    assert "Not valid JSON" in response.content.decode()
    assert counts == (ActionRequest.objects.count(), AuditEvent.objects.count())


def test_try_an_action_under_a_draft_judges_it_by_the_draft(client, agent):
    _login_owner(client, agent)
    preview = client.post(reverse("agents:simulate-preview", args=[agent.slug]), {
        "draft": "guardrail", "name": "Over 300 is blocked", "field": "amount",
        "operator": "gt", "value": "300", "effect": "block"}, headers={"HX-Request": "true"})
    assert 'name="try-operation"' in preview.content.decode()  # the matrix offers the form
    url = reverse("agents:simulate-try-draft", args=[agent.slug])
    draft = {"draft": "guardrail", "name": "Over 300 is blocked", "field": "amount",
             "operator": "gt", "value": "300", "effect": "block"}
    action = {"try-system": "crm", "try-operation": "update_deal", "try-kind": "execute",
              "try-amount": "650"}
    counts = (ActionRequest.objects.count(), AuditEvent.objects.count(),
              Guardrail.objects.count())

    page = client.post(url, {**draft, **action}, headers={"HX-Request": "true"})

    assert page.status_code == 200
    assert "effect-block" in page.content.decode()
    assert "Over 300 is blocked" in page.content.decode()
    now = client.post(reverse("agents:simulate", args=[agent.slug]), {
        "system": "crm", "operation": "update_deal", "kind": "execute", "amount": "650"})
    assert "effect-block" not in now.content.decode()  # the policy in force lets it through
    broken = client.post(url, {**draft, "value": "lots", **action}).content.decode()
    assert "The draft: " in broken and "effect-" not in broken
    assert counts == (ActionRequest.objects.count(), AuditEvent.objects.count(),
                      Guardrail.objects.count())


def test_stored_staleness_counts_while_the_source_stays_declared(agent):
    """A request reviewed for a stale source stays reviewed, until the draft drops the
    source (then the engine blocks it as undeclared)."""
    action = propose_all(agent, [{"system": "crm", "operation": "lookup", "kind": "read",
                                  "sources": ["old-prices"], "idempotency_key": "s"}])[0]
    assert action.decision == "review"
    policy = current(agent)
    assert simulate.replay(agent_id=agent.pk, draft=policy).changed == 0
    without = simulate.draft_with(policy, sources={
        slug: s for slug, s in policy.sources.items() if slug != "old-prices"})
    assert simulate.replay(agent_id=agent.pk, draft=without).transitions() == {
        "review→block": 1}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_preview_button_shows_the_matrix_in_the_browser(live_server):
    from playwright.sync_api import expect

    from tests.e2e.chromium import chromium_page
    from tests.factories import PASSWORD

    agent = make_live_agent()
    DataSourceFactory(slug="old-prices", name="Old prices")
    SystemFactory(slug="billing", name="Billing")
    propose_all(agent, proposals(40, seed=6))
    owner = agent.business_owner
    with chromium_page() as page:
        page.goto(f"{live_server.url}/accounts/login/?next=/agents/{agent.slug}/edit/")
        page.get_by_label("Username").fill(owner.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        guardrails = page.locator("#guardrails")
        # by name: the agent form above uses the same ids (id_name…)
        guardrails.locator("[name=name]").fill("Over 300 is blocked")
        guardrails.locator("[name=field]").fill("amount")
        guardrails.locator("[name=operator]").select_option("gt")
        guardrails.locator("[name=value]").fill("300")
        guardrails.locator("[name=effect]").select_option("block")
        guardrails.get_by_role("button", name="Preview effect").click()
        expect(page.locator("#preview-guardrail")).to_contain_text("of 40 decisions")
        expect(page.locator("#preview-guardrail table")).to_be_visible()
        # one hand-written action under the same draft
        preview = page.locator("#preview-guardrail")
        preview.get_by_text("Try one action under this draft").click()
        preview.locator("[name=try-system]").select_option("crm")
        preview.locator("[name=try-kind]").select_option("execute")
        preview.locator("[name=try-operation]").fill("update_deal")
        preview.locator("[name=try-amount]").fill("650")
        preview.get_by_role("button", name="Try it under the draft").click()
        expect(page.locator("#try-result-guardrail")).to_contain_text("Over 300 is blocked")
        expect(page.locator("#try-result-guardrail .effect-block")).to_be_visible()
    assert not Guardrail.objects.filter(name="Over 300 is blocked").exists()
