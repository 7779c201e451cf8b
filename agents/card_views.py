"""The agent card page: what the agent may do, in sentences, from the policy the gate uses."""

from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from agents import card
from agents.models import Agent, System
from agents.snapshots import policy_snapshot
from portal.permissions import get_visible_agent_or_404


def agent_card(request, slug):
    agent = get_visible_agent_or_404(
        request.user, slug,
        Agent.objects.select_related("business_owner", "process_owner", "technical_owner")
        .prefetch_related("pausers"))
    # The very snapshot the gate judges by at this version (cached per process by version).
    policy = policy_snapshot(agent.pk, agent.policy_version)
    names = dict(System.objects.filter(slug__in=card.systems_named(policy))
                 .values_list("slug", "name"))
    report = f"{reverse('incidents:create')}?{urlencode({'agent': agent.slug})}"
    return render(request, "agents/card.html", {
        "agent": agent,
        "card": card.build_card(policy, names, timezone.now()),
        "report_url": request.build_absolute_uri(report),  # absolute: it is read on paper too
    })
