from django.http import Http404

from portal.permissions import visible_agents
from reviews.models import ActionRequest


def action_for_user(*, user, public_id) -> ActionRequest:
    """The request if the user may see its agent; 404 otherwise."""
    action = (ActionRequest.objects
              .select_related("agent", "system", "route_to_group", "reviewed_by")
              .filter(public_id=public_id, agent__in=visible_agents(user).values("pk"))
              .first())
    if action is None:
        raise Http404("No such action request.")
    return action
