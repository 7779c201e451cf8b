"""`POST /api/v1/simulate`: the decision an action would get now, writing nothing.

An agent asks with its own token; a person with a browser session asks for an agent they may
change (owners, Admins). No action request is stored, no audit event written, nothing queued.
"""

from typing import Literal

from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.security import HttpBearer, SessionAuth
from pydantic import Field

from agents import simulate, snapshots
from agents.models import Agent
from portal.permissions import CHANGE_AGENT, VIEW_AGENT, has_agent_perm
from reviews.schemas import BODY_ERRORS, ErrorOut, ProposalIn, ReasonOut

router = Router(tags=["simulate"])


class _AgentToken(HttpBearer):
    """The API's bearer-token auth (portal.api), looked up when called: no import cycle."""

    def authenticate(self, request: HttpRequest, token: str):
        from portal.api import AgentTokenAuth

        return AgentTokenAuth().authenticate(request, token)


class SimulateIn(ProposalIn):
    agent: str | None = Field(None, max_length=50,
                              description="The agent's slug: required with a session; with a "
                                          "token it may only name the token's own agent.")


class SimulateOut(Schema):
    agent: str
    policy_version: int
    decision: Literal["allow", "review", "block"]
    sampled: bool = Field(description="L2: this draw would be sampled for review afterwards "
                                      "(a real request draws by its own id).")
    route_to_group: str | None
    reasons: list[ReasonOut]


def _agent_for(request, slug: str | None) -> Agent | Status:
    token = getattr(request, "agent_token", None)
    if token is not None:
        if slug and slug != token.agent.slug:
            return Status(403, {"detail": f"This token belongs to '{token.agent.slug}': it may "
                                          "only simulate that agent's own actions."})
        return Agent.objects.get(pk=token.agent_id)  # fresh: a pause shows at once
    if not slug:
        return Status(400, {"detail": "Name the agent: send \"agent\": \"<slug>\" in the body "
                                      "(with a token, the token's agent is assumed)."})
    agent = Agent.objects.filter(slug=slug).first()
    if agent is None or not has_agent_perm(request.user, VIEW_AGENT, agent):
        return Status(404, {"detail": f"No agent '{slug}' that you may see."})
    if not has_agent_perm(request.user, CHANGE_AGENT, agent):
        return Status(403, {"detail": f"Only owners of '{slug}' and Admins may simulate it."})
    return agent


@router.post("/simulate", auth=[_AgentToken(), SessionAuth()],
             response={200: SimulateOut, 403: ErrorOut, 404: ErrorOut, **BODY_ERRORS},
             summary="What would the gate decide? Nothing is stored.")
def simulate_action(request, body: SimulateIn):
    """The decision, sampling and every reason the gate would give this action now, under
    the agent's current policy. Writes nothing: no action request, no audit event."""
    agent = _agent_for(request, body.agent)
    if isinstance(agent, Status):
        return agent
    policy = snapshots.policy_snapshot(agent.pk, agent.policy_version)
    try:
        decision = simulate.judge(policy=policy, proposal=body.dict(exclude={"agent"}))
    except simulate.DraftInputError as exc:
        return Status(400, {"detail": exc.message, "field": exc.field})
    return Status(200, {"agent": agent.slug, "policy_version": policy.version,
                        "decision": decision.outcome, "sampled": decision.sampled,
                        "route_to_group": decision.route_to_group,
                        "reasons": [reason.as_dict() for reason in decision.reasons]})
