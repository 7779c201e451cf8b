"""What agents send to the gate and what they get back (django-ninja / pydantic)."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ninja import Schema
from pydantic import Field, field_validator

from portal.text import contains_nul

Kind = Literal["read", "draft", "recommend", "execute"]


class ProposalIn(Schema):
    system: str = Field(min_length=1, max_length=50, description="The system's slug, e.g. crm.")
    operation: str = Field(min_length=1, max_length=80, description="e.g. update_contact.")
    kind: Kind = Field(description="read < draft < recommend < execute")
    target: str = Field("", max_length=300, description="The record it acts on, e.g. deal 4411.")
    summary: str = Field("", max_length=5000, description="One line a reviewer reads first.")
    changes: dict[str, Any] = Field(default_factory=dict,
                                    description="Proposed field changes: {field: new value}.")
    content: str = Field("", max_length=100_000, description="A draft text, if any.")
    amount: float | None = Field(None, ge=-1e13, le=1e13, allow_inf_nan=False)
    currency: str = Field("", pattern=r"^([A-Z]{3})?$", description="ISO 4217, e.g. EUR.")
    confidence: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    sources: list[str] = Field(default_factory=list, max_length=50,
                               description="Slugs of the data sources used.")
    prompt: str = Field("", max_length=200_000)
    cost_usd: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False)
    tokens: int | None = Field(None, ge=0, le=2_000_000_000)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200,
                                        description="Repeat it to get the first answer back.")

    @field_validator("*")
    @classmethod
    def no_nul_characters(cls, value):
        if contains_nul(value):
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value

    @field_validator("sources")
    @classmethod
    def slugs_are_short(cls, value: list[str]) -> list[str]:
        if any(not 0 < len(slug) <= 50 for slug in value):
            raise ValueError("each source is a slug of 1 to 50 characters")
        return value


class ReasonOut(Schema):
    code: str
    message: str


class DecisionOut(Schema):
    id: UUID
    decision: Literal["allow", "review", "block"]
    status: str
    sampled: bool
    reasons: list[ReasonOut]
    review_url: str


class ActionOut(DecisionOut):
    created_at: datetime
    system: str
    operation: str
    kind: str
    route_to_group: str | None
    reviewed_at: datetime | None
    review_note: str
    edited: bool = Field(description="A reviewer edited the proposal: use changes/content.")
    changes: dict[str, Any] = Field(description="The final changes (the reviewer's edit if any).")
    content: str = Field(description="The final content (the reviewer's edit if any).")
    outcome_detail: str
    outcome_at: datetime | None


class OutcomeIn(Schema):
    outcome: Literal["executed", "failed", "rolled_back"]
    detail: str = Field("", max_length=10_000)

    @field_validator("detail")
    @classmethod
    def no_nul_characters(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value


class ErrorOut(Schema):
    detail: str


class ValidationProblem(Schema):
    loc: list[str | int] = Field(description='Where, e.g. ["body", "proposal", "amount"].')
    msg: str = Field(description="What is wrong, e.g. 'Input should be less than or equal "
                                 "to 1'.")
    type: str


class ValidationErrorOut(Schema):
    detail: list[ValidationProblem]


# What any operation may answer besides its own results (portal.api, portal.middleware):
# 401 without a valid token, 429 past the token's rate limit (with Retry-After), 503 when
# the database is unreachable ("do not act");
COMMON_ERRORS = {401: ErrorOut, 429: ErrorOut, 503: ErrorOut}
# 422 for an invalid path parameter or body;
INPUT_ERRORS = {**COMMON_ERRORS, 422: ValidationErrorOut}
# 400 for a body that is not JSON, 413 for one over the limit.
BODY_ERRORS = {**INPUT_ERRORS, 400: ErrorOut, 413: ErrorOut}
