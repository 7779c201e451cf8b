"""The agent card page: what the agent may do, in sentences, from the policy the gate uses."""

from urllib.parse import urlencode

from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from agents import card, selectors
from agents.snapshots import policy_snapshot


def agent_card(request, slug):
    agent = selectors.agent_for_card(user=request.user, slug=slug)
    # The very snapshot the gate judges by at this version (cached per process by version).
    policy = policy_snapshot(agent.pk, agent.policy_version)
    names = selectors.system_names(card.systems_named(policy))
    report = f"{reverse('incidents:create')}?{urlencode({'agent': agent.slug})}"
    return render(request, "agents/card.html", {
        "agent": agent,
        "card": card.build_card(policy, names, timezone.now()),
        "report_url": request.build_absolute_uri(report),  # absolute: it is read on paper too
    })
