"""The agent API for metrics: `POST /api/v1/observations`."""

from ninja import Router

from metrics import import_services
from metrics.schemas import ObservationsIn, PushOut
from reviews.schemas import BODY_ERRORS

router = Router(tags=["metrics"])


@router.post("/observations", response={200: PushOut, **BODY_ERRORS},
             summary="Report metric observations for the token's agent.")
def push_observations(request, body: ObservationsIn):
    """Write the valid observations at once (a repeated push changes nothing: the same agent,
    metric, observed_at and source update the stored value). Each invalid item is answered
    in `errors` with its index, field and what is wrong; the others are still written.
    A body that is not this shape answers 422."""
    items = [item.dict() for item in body.observations]
    result = import_services.observations_push(token=request.agent_token, items=items,
                                               body=request.body)
    return {"batch": result.batch.public_id, "received": len(items),
            "imported": result.inserted, "updated": result.updated,
            "rejected": len(result.errors), "errors": result.errors}
