"""factory-boy factories and a small cast of users, one per role."""

import itertools
from dataclasses import dataclass

import factory
from django.contrib.auth.models import Group
from guardian.shortcuts import assign_perm

from agents import services
from agents.models import Agent, DataSource, RollbackStep, System, SystemAccess
from portal.models import User
from portal.roles import ADMINS, OWNERS, REVIEWERS, REVOPS

PASSWORD = "correct horse battery staple"
_agent_numbers = itertools.count(1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or ():
            self.groups.add(Group.objects.get(name=name))


class SystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = System
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"system-{n}")
    name = factory.LazyAttribute(lambda s: s.slug.replace("-", " ").title())


class DataSourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataSource
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"source-{n}")
    name = factory.LazyAttribute(lambda s: s.slug.replace("-", " ").title())
    approved = True


class AgentFactory(factory.django.DjangoModelFactory):
    """A bare agent written straight to the table (no service, no audit, no permissions)."""

    class Meta:
        model = Agent
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda a: a.slug.replace("-", " ").title())
    business_outcome = "Cut time to first reply to under one hour."
    definition_of_done = "A draft reply is ready in the ticket."
    workflow = "support"


def make_agent(*, actor=None, owner=None, slug=None, ready=False, **fields) -> Agent:
    """An agent registered through the service, owned by `owner` (all three roles).

    `ready=True` adds a system access, a rollback step and a guardrail, so it may go live.
    """
    owner = owner or UserFactory()
    fields.setdefault("name", (slug or "agent").replace("-", " ").title())
    agent = services.agent_create(
        actor=actor,
        slug=slug or f"agent-{next(_agent_numbers)}",
        business_owner=owner, process_owner=owner, technical_owner=owner,
        business_outcome="Cut time to first reply to under one hour.",
        definition_of_done="A draft reply is ready in the ticket.",
        **fields,
    )
    if ready:
        system = SystemFactory(slug="helpdesk", name="Helpdesk")
        SystemAccess.objects.create(agent=agent, system=system, max_kind="draft")
        RollbackStep.objects.create(agent=agent, position=1, title="Discard the draft",
                                    instructions="Delete the draft reply in the ticket.")
        services.guardrail_create(actor=None, agent=agent, name="Big refunds", field="amount",
                                  operator="gt", value=500, effect="review")
    return agent


@dataclass
class Roles:
    """The cast for permission tests. `agent` is the one they relate to, `other` is not."""

    admin: User
    revops: User
    owner: User
    reviewer: User
    other_reviewer: User
    pauser: User
    viewer: User  # logged in, no access to anything
    agent: Agent
    other: Agent

    def all(self) -> dict[str, User]:
        return {name: getattr(self, name) for name in
                ("admin", "revops", "owner", "reviewer", "other_reviewer", "pauser", "viewer")}


def make_roles() -> Roles:
    owner = UserFactory(username="olga-owner", groups=[OWNERS])
    pauser = UserFactory(username="paul-pauser")
    agent = make_agent(owner=owner, slug="refund-replies", name="Refund replies",
                       pausers=[pauser])
    other = make_agent(owner=UserFactory(username="oscar-other", groups=[OWNERS]),
                       slug="crm-hygiene", name="CRM hygiene")
    reviewer = UserFactory(username="rita-reviewer", groups=[REVIEWERS])
    other_reviewer = UserFactory(username="rudi-reviewer", groups=[REVIEWERS])
    for user, target in ((reviewer, agent), (other_reviewer, other)):
        assign_perm("agents.view_agent", user, target)
        assign_perm("agents.review_agent", user, target)
    return Roles(
        admin=UserFactory(username="ada-admin", groups=[ADMINS]),
        revops=UserFactory(username="remy-revops", groups=[REVOPS]),
        owner=owner, reviewer=reviewer, other_reviewer=other_reviewer, pauser=pauser,
        viewer=UserFactory(username="vic-viewer"),
        agent=agent, other=other,
    )


def complete_plan(agent: Agent) -> Agent:
    """Finish the agent's 30-day rollout plan the way owners would, so it may go live: a
    pauser, three quality targets with human baselines, a first scorecard review, and every
    manual task ticked (the automatic checks then hold by themselves)."""
    from django.utils import timezone

    from agents import rollout
    from metrics import selectors as metric_selectors
    from metrics import services as metric_services
    from metrics.models import Metric

    if not agent.pausers.exists():
        agent = services.agent_update(actor=None, agent=agent,
                                      pausers=[UserFactory(username=f"{agent.slug}-pauser")])
    for key, (target, baseline) in {"accuracy": (95, 90), "completeness": (95, 92),
                                    "policy_compliance": (99, 97)}.items():
        metric_services.target_set(actor=None, agent=agent, metric=Metric.objects.get(key=key),
                                   target=target, human_baseline=baseline)
    if not agent.scorecard_reviews.exists():
        week = metric_selectors.reporting_periods("week", timezone.localdate())[0]
        metric_services.scorecard_review_record(actor=None, agent=agent, grain="week",
                                                period_start=week, decision="expand")
    for task in rollout.plan_for(agent):
        if not task.auto_check and task.done_at is None:
            rollout.task_tick(actor=None, task=task, done=True)
    assert rollout.plan_missing(agent) == [], rollout.plan_missing(agent)
    return agent


def make_live_agent() -> Agent:
    """A live L2 agent for gate tests: execute in the CRM (stage changes need review), draft
    in the helpdesk, one declared source `crm-records`, no sampling."""
    from agents.models import SystemAccess

    agent = make_agent(slug="crm-hygiene", ready=True, autonomy_level=2, review_sample_rate=0.0)
    crm = SystemFactory(slug="crm", name="CRM")
    SystemAccess.objects.create(agent=agent, system=crm, max_kind="execute")
    agent.sources.add(DataSourceFactory(slug="crm-records", name="CRM records"))
    services.guardrail_create(actor=None, agent=agent, name="Stage changes need approval",
                              field="changes.stage", operator="changed", effect="review")
    services.agent_move(actor=None, agent=agent, to_status="pilot")
    complete_plan(agent)
    return services.agent_move(actor=None, agent=agent, to_status="live")
