"""What agents push to `POST /api/v1/observations` and what they get back."""

from uuid import UUID

from ninja import Schema
from pydantic import Field


class ObservationIn(Schema):
    """One observation. Fields are checked one by one, so a bad item is answered in
    `errors` and the others are still written."""

    metric: str | None = Field(None, description="The metric's key, e.g. accuracy.")
    observed_at: str | None = Field(
        None, description="ISO 8601 date or date-time: a date means midnight UTC, a date-time "
                          "without an offset is UTC.", examples=["2026-01-05T09:30:00Z"])
    value: float | str | None = Field(None, description="A finite number within the "
                                                        "metric's range.")
    source: str | None = Field(None, description="Where the number comes from (default "
                                                 "`api`); part of the natural key.")
    agent: str | None = Field(None, description="The agent's slug; leave it out for the "
                                                "token's agent (no other agent is accepted).")


class ObservationsIn(Schema):
    observations: list[ObservationIn] = Field(max_length=10_000)


class ItemErrorOut(Schema):
    index: int = Field(description="Position of the item in `observations`, from 0.")
    field: str = Field(description="agent, metric, observed_at, value or source.")
    message: str


class PushOut(Schema):
    batch: UUID = Field(description="The import batch recording this push.")
    received: int
    imported: int = Field(description="New observations.")
    updated: int = Field(description="Observations that existed (same agent, metric, "
                                     "observed_at and source): their value was replaced.")
    rejected: int
    errors: list[ItemErrorOut]
