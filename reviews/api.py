from uuid import UUID

from django.http import Http404
from django.urls import reverse
from ninja import Router, Status

from reviews import gate, services
from reviews.models import ActionRequest
from reviews.schemas import (
    BODY_ERRORS,
    INPUT_ERRORS,
    ActionOut,
    DecisionOut,
    ErrorOut,
    OutcomeIn,
    ProposalIn,
)

router = Router(tags=["actions"])


def _review_url(request, action: ActionRequest) -> str:
    return request.build_absolute_uri(reverse("reviews:item", args=[action.public_id]))


def _decision(request, action: ActionRequest) -> dict:
    return {"id": action.public_id, "decision": action.decision, "status": action.status,
            "sampled": action.sampled, "reasons": action.reasons,
            "review_url": _review_url(request, action)}


@router.post("/actions", response={200: DecisionOut, 201: DecisionOut, **BODY_ERRORS},
             summary="May I do this? The gate answers allow, review or block.")
def propose(request, proposal: ProposalIn):
    """Judge one proposed action. 201 for a new decision; 200 with the first answer when the
    `idempotency_key` was seen before. A `review` waits in the inbox: poll
    `GET /actions/{id}` until its status is `approved` or `rejected`."""
    result = gate.propose(token=request.agent_token, proposal=proposal.dict())
    return Status(201 if result.created else 200, _decision(request, result.action))


def _own_action(request, action_id: UUID) -> ActionRequest:
    """The agent's own request; any other agent's answers 404, as if it did not exist."""
    action = (ActionRequest.objects.select_related("system", "route_to_group")
              .filter(public_id=action_id, agent_id=request.agent_token.agent_id).first())
    if action is None:
        raise Http404("No such action request for this agent.")
    return action


def _detail(request, action: ActionRequest) -> dict:
    return {
        **_decision(request, action),
        "created_at": action.created_at, "system": action.system.slug,
        "operation": action.operation, "kind": action.kind,
        "route_to_group": action.route_to_group.name if action.route_to_group_id else None,
        "reviewed_at": action.reviewed_at, "review_note": action.review_note,
        "edited": action.edited_changes is not None or action.edited_content is not None,
        "changes": action.final_changes, "content": action.final_content,
        "outcome_detail": action.outcome_detail, "outcome_at": action.outcome_at,
    }


@router.get("/actions/{action_id}", response={200: ActionOut, 404: ErrorOut, **INPUT_ERRORS},
            summary="Poll a decision.")
def action_detail(request, action_id: UUID):
    """Status, reasons, the reviewer's note and the final changes/content (edited or not)."""
    return _detail(request, _own_action(request, action_id))


@router.post("/actions/{action_id}/outcome",
             response={200: ActionOut, 404: ErrorOut, 409: ErrorOut, **BODY_ERRORS},
             summary="Report what happened after an approval.")
def report_outcome(request, action_id: UUID, body: OutcomeIn):
    """`executed`, `failed` or `rolled_back`, with a detail. Only after an approval
    (and `rolled_back` also after `executed`); anything else answers 409."""
    action = _own_action(request, action_id)
    try:
        action = services.action_outcome_report(
            agent=request.agent_token.agent, action=action, outcome=body.outcome,
            detail=body.detail)
    except services.ActionStateError as exc:
        return Status(409, {"detail": str(exc)})
    return Status(200, _detail(request, action))
