from ninja import Router, Schema

from reviews.schemas import COMMON_ERRORS

router = Router(tags=["agent"])


class AgentOut(Schema):
    slug: str
    name: str
    status: str
    paused: bool
    pause_reason: str
    autonomy_level: int
    policy_version: int
    token_name: str


@router.get("/agent", response={200: AgentOut, **COMMON_ERRORS}, summary="Who am I, and may I act?")
def whoami(request):
    """The agent this token belongs to, read fresh: a pause shows here at once."""
    from agents.models import Agent

    agent = Agent.objects.get(pk=request.agent_token.agent_id)
    return AgentOut(slug=agent.slug, name=agent.name, status=agent.status,
                    paused=agent.status == Agent.Status.PAUSED, pause_reason=agent.pause_reason,
                    autonomy_level=agent.autonomy_level, policy_version=agent.policy_version,
                    token_name=request.agent_token.name)
