"""Policy versions on the agent's pages: the history list lives on the agent page, one
version with its full policy and diff here."""

from django.http import Http404
from django.shortcuts import render

from agents import selectors, versions


def policy_version(request, slug, number):
    """Anyone who may see the agent may read its policy history."""
    agent = selectors.agent_detail(user=request.user, slug=slug)
    version = versions.versions_of(agent).filter(number=number).first()
    if version is None:
        raise Http404(f"{agent.name} has no policy version {number}.")
    neighbours = versions.versions_of(agent).order_by("number").values_list("number", flat=True)
    policy = version.policy
    return render(request, "agents/policy_version.html", {
        "agent": agent, "version": version, "policy": policy,
        "guardrails": [{"name": rule["name"], "effect": rule["effect"],
                        "words": versions.guardrail_words(rule)}
                       for rule in policy.get("guardrails", {}).values()],
        "previous": neighbours.filter(number__lt=number).order_by("-number").first(),
        "next": neighbours.filter(number__gt=number).first(),
    })
