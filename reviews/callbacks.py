"""Telling an agent about a review decision: a signed POST to its callback URL.

When an item of an agent with a `callback_url` is approved (as proposed or edited), rejected
or expires, the decision service marks the item `callback_status=pending` and, once its
transaction commits, enqueues `reviews.tasks.callback_send`. Each attempt POSTs the result as
JSON; a 2xx answer delivers it, anything else (another status, a redirect, no answer within
STEWARD_CALLBACK_TIMEOUT_SECONDS) is retried with exponential backoff and jitter until
STEWARD_CALLBACK_MAX_ATTEMPTS, then the item shows `failed` on the agent's page. Polling
`GET /api/v1/actions/{id}` keeps working either way.

The signature (README, "Decision callbacks"):

    X-Steward-Timestamp: <unix seconds>
    X-Steward-Signature: sha256=<hex HMAC-SHA256(key=callback_secret, msg=f"{timestamp}.{body}")>

The key is the secret exactly as shown on the agent's page (its ASCII characters); the body is
the raw request body. Receivers recompute it, compare in constant time and refuse timestamps
older than a few minutes (`verify_signature`). A callback may arrive more than once (a
worker that dies after the POST delivers it again): deduplicate by `id`.
"""

import hashlib
import hmac
import json
import logging
import random
import time
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from portal import audit
from portal.url_safety import check_outgoing_url, safe_opener
from reviews.models import ActionRequest

logger = logging.getLogger(__name__)

CallbackStatus = ActionRequest.CallbackStatus
SIGNATURE_HEADER = "X-Steward-Signature"
TIMESTAMP_HEADER = "X-Steward-Timestamp"
SIGNATURE_TOLERANCE_SECONDS = 300  # what verify_signature accepts as "recent"
BACKOFF_MAX_SECONDS = 3600
ERROR_MAX_CHARS = 500


class CallbackNotDelivered(Exception):
    """This attempt failed and another one is due (the task retries with backoff)."""

    def __init__(self, error: str, attempts: int):
        super().__init__(error)
        self.attempts = attempts


def callback_payload(action: ActionRequest) -> dict:
    """What the agent receives: the same facts `GET /api/v1/actions/{id}` answers."""
    return {
        "id": str(action.public_id),
        "status": action.status,
        "decision": action.decision,
        "review_note": action.review_note,
        "changes": action.final_changes,
        "content": action.final_content,
        "edited": action.edited_changes is not None or action.edited_content is not None,
        "decided_at": action.reviewed_at,
    }


def callback_body(action: ActionRequest) -> bytes:
    return json.dumps(callback_payload(action), cls=DjangoJSONEncoder, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """The X-Steward-Signature value for this body sent at this timestamp."""
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(*, secret: str, timestamp: str, body: bytes, signature: str,
                     now: float | None = None,
                     tolerance: int = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(age) > tolerance:
        return False
    expected = sign(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, signature or "")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer we do not follow: the body would not be POSTed again."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = safe_opener(_NoRedirects)  # refuses private addresses at connect time (SSRF)


def _post(url: str, body: bytes, headers: dict) -> str | None:
    """POST once; None when the receiver answered 2xx, else what went wrong, in words."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    timeout = settings.STEWARD_CALLBACK_TIMEOUT_SECONDS
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(64 * 1024)
            return None
    except urllib.error.HTTPError as exc:
        detail = exc.read(1024).decode("utf-8", "replace").strip() if exc.fp else ""
        return f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
    except urllib.error.URLError as exc:
        return f"Could not reach {url}: {exc.reason}"
    except TimeoutError:
        return f"No answer within {timeout} s"
    except (OSError, ValueError) as exc:  # reset connections, malformed URLs
        return f"Could not deliver to {url}: {exc}"


def callback_deliver(*, action_id: int) -> str:
    """One attempt to deliver the decision of `action_id`; its callback status afterwards.

    Safe to run twice: only a `pending` callback is sent, and each attempt is counted on the
    item under its row lock. Raises CallbackNotDelivered when another attempt is due.
    """
    action = ActionRequest.objects.filter(pk=action_id).first()
    if action is None or action.callback_status != CallbackStatus.PENDING:
        return action.callback_status if action is not None else CallbackStatus.NONE
    agent = Agent.objects.only("slug", "callback_url", "callback_secret").get(pk=action.agent_id)
    if not agent.callback_url or not agent.callback_secret:
        return _record(action_id, agent, give_up=True,
                       error="The agent has no callback URL (or secret) any more.")
    try:  # the URL was checked when saved; check again: DNS may point elsewhere by now
        check_outgoing_url(agent.callback_url)
    except ValidationError as exc:
        return _record(action_id, agent, error=exc.messages[0])
    body = callback_body(action)
    timestamp = str(int(time.time()))
    error = _post(agent.callback_url, body, {
        "Content-Type": "application/json",
        "User-Agent": "Steward-Callback/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret=agent.callback_secret, timestamp=timestamp, body=body),
    })
    return _record(action_id, agent, error=error)


def _record(action_id: int, agent: Agent, *, error: str | None, give_up: bool = False) -> str:
    with transaction.atomic():
        action = ActionRequest.objects.select_for_update().get(pk=action_id)
        if action.callback_status != CallbackStatus.PENDING:
            return action.callback_status  # a concurrent delivery of the same task finished
        action.callback_attempts += 1
        action.callback_at = timezone.now()
        action.callback_error = (error or "")[:ERROR_MAX_CHARS]
        if error is None:
            action.callback_status = CallbackStatus.DELIVERED
        elif give_up or action.callback_attempts >= settings.STEWARD_CALLBACK_MAX_ATTEMPTS:
            action.callback_status = CallbackStatus.FAILED
        action.save(update_fields=["callback_attempts", "callback_at", "callback_error",
                                   "callback_status"])
        if action.callback_status != CallbackStatus.PENDING:
            audit.record(actor=None, verb=f"action.callback_{action.callback_status}",
                         obj=action, agent=agent,
                         data={"request": str(action.public_id), "url": agent.callback_url,
                               "attempts": action.callback_attempts,
                               "error": action.callback_error})
    if action.callback_status == CallbackStatus.PENDING:
        logger.info("Callback for %s failed (attempt %s): %s", action.public_id,
                    action.callback_attempts, error)
        raise CallbackNotDelivered(action.callback_error, action.callback_attempts)
    if action.callback_status == CallbackStatus.FAILED:
        logger.warning("Callback for %s failed for good after %s attempts: %s",
                       action.public_id, action.callback_attempts, error)
    return action.callback_status


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter: a random wait between half and all of
    base × 2^(attempts-1) seconds (up to 30, 60, 120… by default), capped at an hour."""
    ceiling = min(BACKOFF_MAX_SECONDS,
                  settings.STEWARD_CALLBACK_BACKOFF_SECONDS * 2 ** max(0, attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def failed_callbacks(*, agent: Agent, limit: int = 5, days: int = 30) -> list[ActionRequest]:
    """The agent's latest decisions whose callback failed for good (for its page); only the
    last `days` are searched, so the page stays cheap for an agent with many requests."""
    since = timezone.now() - timedelta(days=days)
    return list(ActionRequest.objects
                .filter(agent=agent, created_at__gte=since,
                        callback_status=CallbackStatus.FAILED)
                .only("public_id", "status", "summary", "operation", "callback_attempts",
                      "callback_error", "callback_at", "created_at")
                .order_by("-created_at")[:limit])
