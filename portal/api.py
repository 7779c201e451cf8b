"""The agent-facing JSON API at /api/v1: assembly, bearer-token auth and error answers.

Agents authenticate with `Authorization: Bearer <token>`; the routers live in their apps
(agents/api.py, reviews/api.py). Every error is JSON with a `detail` a person can act on;
if the database (or anything the gate needs) is unavailable the answer is 503, never a
decision, and the client must treat it as "do not act".
"""

from django.db import DatabaseError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from agents.services import agent_token_authenticate, hash_token
from portal import ratelimit
from reviews.gate import GateInputError


class AgentTokenAuth(HttpBearer):
    def authenticate(self, request, token):
        # Throttle before the lookup: a runaway token costs Redis one round trip, not a query.
        ratelimit.check(hash_token(token))
        found = agent_token_authenticate(token)
        if found is not None:
            request.agent_token = found
        return found


api = NinjaAPI(
    title="Steward agent API",
    version="1",
    description="The policy gate for AI agents: propose an action, get allow, review or block "
                "with every reason; poll a review; report the outcome.",
    auth=AgentTokenAuth(),
    urls_namespace="api",
)


@api.exception_handler(AuthenticationError)
def unauthorised(request, exc):
    return api.create_response(request, {
        "detail": "Missing, unknown or revoked token, or the agent is retired. Send "
                  "'Authorization: Bearer <token>' with a token from the agent's page."},
        status=401)


@api.exception_handler(ratelimit.Throttled)
def throttled(request, exc):
    response = api.create_response(request, {
        "detail": exc.detail(), "limit": exc.limit, "retry_after": exc.retry_after},
        status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(GateInputError)
def bad_reference(request, exc):
    return api.create_response(request, {"detail": exc.message, "field": exc.field}, status=400)


@api.exception_handler(DatabaseError)
def unavailable(request, exc):
    return api.create_response(request, {
        "detail": "Steward cannot reach its database right now, so it cannot decide. "
                  "Do not act; retry later.",
        "decision": None}, status=503)


api.add_router("/", "agents.api.router")
api.add_router("/", "reviews.api.router")
api.add_router("/", "agents.simulate_api.router")
api.add_router("/", "metrics.api.router")
