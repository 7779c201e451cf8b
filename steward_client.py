"""A small client for Steward's agent API: ask the gate before acting.

One file, standard library only: copy it next to your agent, or install the Steward repository.

    from steward_client import Blocked, GateUnavailable, Rejected, Steward

    steward = Steward("https://steward.example.com", token=os.environ["STEWARD_TOKEN"])

    @steward.gated(system="crm", operation="update_deal", kind="execute")
    def update_deal(*, target: str, changes: dict, content: str) -> None:
        crm.update(target, changes)           # runs only once Steward says yes

    try:
        update_deal(target="deal 4411", changes={"stage": "won"},
                    summary="Mark deal 4411 as won", confidence=0.9,
                    sources=["crm-records"], prompt=prompt)
    except (Blocked, Rejected) as no:        # Steward or a person said no: say why
        log.warning("Not done: %s", no)
    except GateUnavailable:                   # Steward could not answer: do NOT act
        retry_later()

Without the decorator: `decision = steward.propose(...)`; act if `decision.allowed`; if
`decision.pending`, `decision = steward.wait(decision)` until a person decides (a reviewer's
edit is in `decision.changes`/`decision.content`); then `steward.report(decision, "executed")`.

The rule the client keeps: when the gate cannot answer (HTTP 5xx, connection refused, a
timeout, an answer that is not Steward's JSON), it raises `GateUnavailable` and never returns
a decision, so nothing is done without a "yes".
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import http.client
import inspect
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "AgentInfo", "AuthenticationFailed", "BadRequest", "Blocked", "Conflict", "Decision",
    "GateUnavailable", "NotApproved", "NotFound", "Reason", "Rejected", "Steward",
    "StewardError", "WaitTimeout", "gated",
]

__version__ = "1.0"

logger = logging.getLogger("steward_client")

R = TypeVar("R")

KINDS = ("read", "draft", "recommend", "execute")
OUTCOMES = ("executed", "failed", "rolled_back")
# Proposal fields besides system/operation/kind, which `gated` fixes when it decorates.
PROPOSAL_FIELDS = ("target", "summary", "changes", "content", "amount", "currency",
                   "confidence", "sources", "prompt", "cost_usd", "tokens", "idempotency_key")
MAX_OUTCOME_DETAIL = 10_000  # the server's limit for an outcome's detail


# --- What the gate answers -----------------------------------------------------------------

@dataclass(frozen=True)
class Reason:
    """Why the gate decided as it did: a stable `code` (e.g. `guardrail`) and a sentence."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Decision:
    """The gate's answer to one proposal, or its state when polled.

    `decision` is the gate's first verdict (`allow`, `review`, `block`) and never changes;
    `status` is where the request stands now: `approved`, `pending`, `blocked`, `rejected`,
    `expired`, `cancelled`, then `executed`, `failed` or `rolled_back` once reported.

    `review_note`, `changes`, `content` and `edited` come with polled results (`get`, `wait`,
    `report`); `changes`/`content` are the final ones — the reviewer's edit if there was one —
    and are None on the answer of `propose`, which returns before anyone could edit.
    """

    id: str
    decision: str
    status: str
    sampled: bool
    reasons: tuple[Reason, ...]
    review_url: str
    review_note: str = ""
    changes: dict[str, Any] | None = field(default=None, hash=False)
    content: str | None = None
    edited: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def allowed(self) -> bool:
        """You may act now: the gate allowed it, or a reviewer approved it."""
        return self.status == "approved"

    @property
    def pending(self) -> bool:
        """A person has not decided yet: `wait` for them."""
        return self.status == "pending"

    @property
    def blocked(self) -> bool:
        """The gate refused it; no person can approve it."""
        return self.status == "blocked"

    @property
    def rejected(self) -> bool:
        """A reviewer said no; `review_note` says why."""
        return self.status == "rejected"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Decision:
        try:
            return cls(
                id=str(body["id"]), decision=str(body["decision"]),
                status=str(body["status"]), sampled=bool(body.get("sampled", False)),
                reasons=tuple(Reason(str(r.get("code", "")), str(r.get("message", "")))
                              for r in body.get("reasons") or ()),
                review_url=str(body.get("review_url", "")),
                review_note=str(body.get("review_note") or ""),
                changes=body.get("changes"), content=body.get("content"),
                edited=bool(body.get("edited", False)), raw=dict(body))
        except (KeyError, TypeError, AttributeError) as exc:
            raise GateUnavailable(f"Steward's answer is not a decision ({exc!r}); do not act.",
                                  body=body) from exc


@dataclass(frozen=True)
class AgentInfo:
    """Who the token speaks for (`GET /api/v1/agent`); `paused` shows a pause at once."""

    slug: str
    name: str
    status: str
    paused: bool
    pause_reason: str
    autonomy_level: int
    policy_version: int
    token_name: str


# --- Errors --------------------------------------------------------------------------------

class StewardError(Exception):
    """Anything that went wrong talking to Steward. `status` is the HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "",
                 body: Any = None):
        super().__init__(message)
        self.status, self.detail, self.body = status, detail or message, body


class GateUnavailable(StewardError):
    """Steward could not answer (503 or another 5xx, connection refused, a timeout, an answer
    that is not its JSON). There is no decision: do NOT act; retry later."""


class AuthenticationFailed(StewardError):
    """401: the token is missing, unknown or revoked, or the agent is retired."""


class BadRequest(StewardError):
    """400, 413 or 422: the proposal is wrong; `fields` names the fields at fault.

    `errors` holds the server's list of validation errors (422) as sent.
    """

    def __init__(self, message: str, *, status: int, detail: str = "", body: Any = None,
                 fields: tuple[str, ...] = (), errors: tuple[Mapping[str, Any], ...] = ()):
        super().__init__(message, status=status, detail=detail, body=body)
        self.fields, self.errors = fields, errors


class NotFound(StewardError):
    """404: no such action request for this agent (an agent sees only its own)."""


class Conflict(StewardError):
    """409, or a request already past the point asked for: e.g. an outcome reported for a
    request that was never approved, or a `gated` call replaying an executed request."""


class WaitTimeout(StewardError):
    """`wait` gave up: nobody decided in time. `decision` is the last state seen (pending)."""

    def __init__(self, decision: Decision, timeout: float):
        super().__init__(f"No decision on {decision.id} after {timeout:g} s; it is still "
                         f"{decision.status}: {decision.review_url}")
        self.decision = decision


class NotApproved(StewardError):
    """The action must not run: blocked, rejected, expired or cancelled (see `decision`)."""

    def __init__(self, decision: Decision, message: str | None = None):
        super().__init__(message or f"Steward did not approve {decision.id}: it is "
                         f"{decision.status}. {decision.review_url}")
        self.decision = decision


class Blocked(NotApproved):
    """The gate blocked the action; the message lists every reason."""

    def __init__(self, decision: Decision):
        reasons = "; ".join(r.message for r in decision.reasons) or "no reason given"
        super().__init__(decision, f"Steward blocked this action: {reasons}")


class Rejected(NotApproved):
    """A reviewer rejected the action; the message carries their note."""

    def __init__(self, decision: Decision):
        note = decision.review_note or "no note given"
        super().__init__(decision, f"A reviewer rejected this action: {note} "
                                   f"({decision.review_url})")


# --- The client ----------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: it would turn a POST into a GET, or carry the token away."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _json_default(value: Any) -> Any:
    """Dates, decimals and UUIDs in `changes` as JSON strings."""
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def _action_id(action: str | uuid.UUID | Decision) -> str:
    return urllib.parse.quote(str(action.id if isinstance(action, Decision) else action),
                              safe="")


class Steward:
    """A connection to Steward for one agent token.

    `url` is where Steward is served, e.g. `https://steward.example.com` (a trailing
    `/api/v1` is optional). `timeout` bounds each HTTP request in seconds. Redirects are not
    followed: point `url` at the final address (mind http → https). Safe to share between
    threads.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"Steward's URL must be http(s)://host[:port], not {url!r}")
        if not token:
            raise ValueError("An agent token is needed: create one on the agent's page.")
        base = url.rstrip("/")
        self.api_url = base if base.endswith("/api/v1") else f"{base}/api/v1"
        self.timeout = timeout
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:
        return f"Steward({self.api_url!r})"

    # -- the API, one method per endpoint --

    def whoami(self) -> AgentInfo:
        """The agent this token belongs to, and whether it is paused."""
        body = self._request("GET", "/agent")
        try:
            return AgentInfo(**{name: body[name] for name in AgentInfo.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise GateUnavailable(f"Steward's answer is not an agent ({exc!r}).",
                                  body=body) from exc

    def propose(self, system: str, operation: str, kind: str, *, target: str = "",
                summary: str = "", changes: Mapping[str, Any] | None = None,
                content: str = "", amount: float | decimal.Decimal | None = None,
                currency: str = "", confidence: float | None = None,
                sources: Iterable[str] = (), prompt: str = "", cost_usd: float | None = None,
                tokens: int | None = None, idempotency_key: str | None = None) -> Decision:
        """Ask the gate "may I do this?"; the answer is allow, review or block, with reasons.

        `kind` is one of read, draft, recommend, execute. `changes` maps field names to new
        values; `sources` are the slugs of the data sources used; `confidence` is 0–1. With
        an `idempotency_key` seen before, Steward returns the first answer and stores nothing.
        Raises BadRequest (naming the field), AuthenticationFailed or GateUnavailable.
        """
        body: dict[str, Any] = {"system": system, "operation": operation, "kind": kind}
        optional = {"target": target, "summary": summary, "content": content,
                    "currency": currency, "prompt": prompt, "amount": amount,
                    "confidence": confidence, "cost_usd": cost_usd, "tokens": tokens,
                    "idempotency_key": idempotency_key}
        body.update({name: value for name, value in optional.items()
                     if value is not None and value != ""})
        if changes:
            body["changes"] = dict(changes)
        if sources:
            body["sources"] = [sources] if isinstance(sources, str) else list(sources)
        return Decision.from_json(self._request("POST", "/actions", body))

    def get(self, action: str | uuid.UUID | Decision) -> Decision:
        """The request's state now: status, reasons, reviewer's note, final changes/content."""
        return Decision.from_json(self._request("GET", f"/actions/{_action_id(action)}"))

    def wait(self, action: str | uuid.UUID | Decision, *, timeout: float = 600.0,
             poll_interval: float = 2.0, max_interval: float = 30.0) -> Decision:
        """Poll until a person decides: return the first state that is not `pending`.

        The interval starts at `poll_interval` and grows by half each time up to
        `max_interval`. Raises WaitTimeout after `timeout` seconds. A moment when Steward
        cannot answer does not end the wait; if it still cannot at the deadline, the
        GateUnavailable is raised.
        """
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            try:
                decision = self.get(action)
            except GateUnavailable:
                if time.monotonic() >= deadline:
                    raise
                logger.info("Steward did not answer a poll of %s; retrying", action)
            else:
                if not decision.pending:
                    return decision
                if time.monotonic() >= deadline:
                    raise WaitTimeout(decision, timeout)
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 1.5, max(max_interval, poll_interval))

    def report(self, action: str | uuid.UUID | Decision, outcome: str,
               detail: str = "") -> Decision:
        """Say what happened after an approval: `executed`, `failed` or `rolled_back`.

        Raises Conflict when the request was not approved (or, for rolled_back, executed).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        return Decision.from_json(self._request(
            "POST", f"/actions/{_action_id(action)}/outcome",
            {"outcome": outcome, "detail": detail}))

    def gated(self, *, system: str, operation: str, kind: str, wait_timeout: float = 600.0,
              poll_interval: float = 2.0,
              **fixed: Any) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate a function so that it runs only when Steward says yes.

        Calling the decorated function proposes the action — its proposal fields (`target`,
        `summary`, `changes`, `content`, `amount`, `currency`, `confidence`, `sources`,
        `prompt`, `cost_usd`, `tokens`, `idempotency_key`) come from the call's keyword
        arguments, with defaults from `fixed` — and then:

        - allow: runs the function at once;
        - review: waits for a person (up to `wait_timeout` seconds, else WaitTimeout) and,
          if they approve, runs it with their final `changes`/`content`;
        - block → raises Blocked; rejection → Rejected; expired or cancelled → NotApproved;
          a replayed `idempotency_key` whose request already has an outcome → Conflict.
          In every one of these the function does not run.

        The function gets the keyword arguments `changes` and `content` — the final ones, a
        reviewer's edit if there was one — when it names them or takes `**kwargs`; every
        keyword of the call that is not a proposal field, and the positional arguments,
        unchanged; and any other proposal field or `decision` (the Decision) it names as a
        parameter. A call the function could not take raises TypeError before proposing.

        When it returns, the outcome `executed` is reported and its result returned; when it
        raises, `failed` is reported with the exception's text and the exception re-raised.
        A failure to report is logged, never raised over the function's own result or error.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        unknown = set(fixed) - set(PROPOSAL_FIELDS)
        if unknown:
            raise TypeError(f"gated() got unknown proposal fields: {', '.join(sorted(unknown))}")

        def decorate(fn: Callable[..., R]) -> Callable[..., R]:
            signature = inspect.signature(fn)
            parameters = signature.parameters
            named = {name for name, p in parameters.items()
                     if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
            takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())

            def arguments(final: Mapping[str, Any]) -> dict[str, Any]:
                """What the function takes: what it names, and changes/content via **kwargs."""
                return {k: v for k, v in final.items()
                        if k in named or (takes_any and k in ("changes", "content"))}

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> R:
                proposal = {**fixed, **{k: v for k, v in kwargs.items() if k in PROPOSAL_FIELDS}}
                passed = {k: v for k, v in kwargs.items() if k not in PROPOSAL_FIELDS}
                # A call the function cannot take fails here, before anything is proposed.
                signature.bind(
                    *args, **arguments({"changes": {}, "content": "", "decision": None,
                                        **proposal}), **passed)

                decision = self._decide(system, operation, kind, proposal,
                                        wait_timeout=wait_timeout, poll_interval=poll_interval)
                final = {**proposal, "decision": decision,
                         "changes": (decision.changes if decision.changes is not None
                                     else dict(proposal.get("changes") or {})),
                         "content": (decision.content if decision.content is not None
                                     else proposal.get("content", ""))}
                try:
                    result = fn(*args, **arguments(final), **passed)
                except Exception as exc:
                    self._report_quietly(decision, "failed", f"{type(exc).__name__}: {exc}")
                    raise
                self._report_quietly(decision, "executed", "")
                return result

            return wrapper

        return decorate

    # -- internals --

    def _decide(self, system: str, operation: str, kind: str, proposal: dict[str, Any], *,
                wait_timeout: float, poll_interval: float) -> Decision:
        """The gate's final word for `gated`: an approved Decision, or an exception."""
        decision = self.propose(system, operation, kind, **proposal)
        if proposal.get("idempotency_key") and not decision.blocked:
            # A replayed key answers for the first proposal: act on what it authorised.
            decision = self.get(decision)
        if decision.pending:
            decision = self.wait(decision, timeout=wait_timeout, poll_interval=poll_interval)
        if decision.allowed:
            return decision
        if decision.blocked:
            raise Blocked(decision)
        if decision.rejected:
            raise Rejected(decision)
        if decision.status in OUTCOMES:
            raise Conflict(f"{decision.id} was already {decision.status} (a replayed "
                           "idempotency key); not running it again.", status=409)
        raise NotApproved(decision)

    def _report_quietly(self, decision: Decision, outcome: str, detail: str) -> None:
        detail = detail.replace("\x00", "")[:MAX_OUTCOME_DETAIL]
        try:
            self.report(decision, outcome, detail)
        except StewardError:
            logger.warning("Could not report %s for %s", outcome, decision.id, exc_info=True)

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One HTTP exchange; JSON in and out, every failure mapped to a StewardError."""
        data = None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                   "User-Agent": f"steward-client/{__version__}"}
        if body is not None:
            data = json.dumps(body, default=_json_default, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.api_url + path, data=data, headers=headers,
                                         method=method)
        location = ""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            try:
                status, raw = exc.code, exc.read()
            except (OSError, http.client.HTTPException) as read_error:
                raise GateUnavailable(f"Steward's {exc.code} answer broke off ({read_error}); "
                                      "do not act.", status=exc.code) from read_error
            finally:
                exc.close()
            location = exc.headers.get("Location", "")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise GateUnavailable(f"Steward at {self.api_url} did not answer ({reason}); "
                                  "do not act.") from exc
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if 200 <= status < 300:
            if not isinstance(parsed, dict):
                raise GateUnavailable(f"Steward answered {status} but not with its JSON; "
                                      "do not act.", status=status, body=raw[:500])
            return parsed
        raise _error(status, parsed, location)


def _field_path(error: Mapping[str, Any]) -> list[str]:
    """["confidence"] from ["body", "proposal", "confidence"], ["action_id"] from
    ["path", "action_id"]: the field, without where it was sent."""
    loc = [str(part) for part in error.get("loc") or ()]
    if loc[:1] == ["body"]:
        return loc[2:]  # after the name of the body parameter
    return loc[1:] if loc[:1] in (["path"], ["query"], ["header"], ["cookie"]) else loc


def _error(status: int, body: Any, location: str) -> StewardError:
    """The exception for an HTTP error answer, with the server's `detail`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    text = detail if isinstance(detail, str) else ""
    if status >= 500 or status == 429:
        return GateUnavailable(f"Steward could not decide ({status}): "
                               f"{text or 'do not act; retry later.'}",
                               status=status, detail=text, body=body)
    if status == 401:
        return AuthenticationFailed(text or "Steward refused the token.", status=status,
                                    body=body)
    if status in (400, 413, 422):
        errors = tuple(e for e in detail if isinstance(e, dict)) if isinstance(detail, list) \
            else ()
        fields = tuple(dict.fromkeys(path[0] for path in map(_field_path, errors) if path))
        if isinstance(body, dict) and isinstance(body.get("field"), str):
            fields, text = (body["field"],), f"{body['field']}: {text}"
        if errors:
            text = "; ".join(f"{'.'.join(_field_path(e)) or 'body'}: {e.get('msg', 'invalid')}"
                             for e in errors)
        return BadRequest(f"Steward refused the request ({status}): {text or 'bad request'}",
                          status=status, detail=text, body=body, fields=fields, errors=errors)
    if status == 404:
        return NotFound(text or "Not found.", status=status, body=body)
    if status == 409:
        return Conflict(text or "Conflict.", status=status, body=body)
    if 300 <= status < 400:
        return StewardError(f"Steward redirects to {location or 'elsewhere'}: use that URL.",
                            status=status, body=body)
    return StewardError(f"Steward answered {status}: {text or 'no detail'}", status=status,
                        body=body)


def gated(client: Steward, *, system: str, operation: str, kind: str,
          **options: Any) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """`gated(steward, system=..., ...)` is `steward.gated(system=..., ...)`."""
    return client.gated(system=system, operation=operation, kind=kind, **options)
