"""The benchmark's baseline: a bare Django endpoint doing the least a gate call must do.

Routed only when `settings.STEWARD_BENCH_ENDPOINTS` is true (`make bench` turns it on for
its own server; never in production). `tests/perf/gate.py` drives it and
`POST /api/v1/actions` with the same bodies and compares them.

Per request, as the gate does at the least: parse the JSON body, one indexed SELECT (the
bearer token's row by its SHA-256, as the API's authentication does) and one INSERT (an
`ActionRequest` through the ORM, carrying the proposal's changes, content and prompt so the
row is as large as the gate's, fixed values elsewhere), then a small JSON answer. No
validation, no policy, no audit event, no transaction block.
"""

import json
import uuid

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.models import AgentToken, System
from agents.services import hash_token
from reviews.models import ActionRequest

BENCH_SYSTEM_SLUG = "bench-baseline"
_system_id: list[int] = []  # looked up once per process, as the gate caches its snapshot


def _bench_system_id() -> int:
    if not _system_id:
        _system_id.append(System.objects.values_list("id", flat=True).get(
            slug=BENCH_SYSTEM_SLUG))
    return _system_id[0]


@csrf_exempt
@login_not_required
@require_POST
def baseline(request):
    raw = request.headers.get("Authorization", "").removeprefix("Bearer ")
    body = json.loads(request.body)
    token = (AgentToken.objects.filter(secret_hash=hash_token(raw), revoked_at__isnull=True)
             .values_list("id", "agent_id").first())
    if token is None:
        return JsonResponse({"detail": "Unknown token."}, status=401)
    action = ActionRequest.objects.create(
        public_id=uuid.uuid4(), agent_id=token[1], token_id=token[0],
        created_at=timezone.now(), system_id=_bench_system_id(), operation="baseline",
        kind="read", changes=body.get("changes") or {}, content=body.get("content") or "",
        prompt=body.get("prompt") or "", decision="allow", status="approved",
        policy_version=0, proposal_sha256="0" * 64)
    return JsonResponse({"id": str(action.public_id), "decision": action.decision,
                         "status": action.status}, status=201)
