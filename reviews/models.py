"""The gate's records: every action an agent proposed, how it was judged and what became of it."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from agents.models import AccessKind, Agent, AgentToken, System


class ActionRequest(models.Model):
    class Decision(models.TextChoices):
        ALLOW = "allow", "allow"
        REVIEW = "review", "review"
        BLOCK = "block", "block"

    class Status(models.TextChoices):
        APPROVED = "approved", "approved"
        PENDING = "pending", "pending"
        REJECTED = "rejected", "rejected"
        BLOCKED = "blocked", "blocked"
        EXPIRED = "expired", "expired"
        CANCELLED = "cancelled", "cancelled"
        EXECUTED = "executed", "executed"
        FAILED = "failed", "failed"
        ROLLED_BACK = "rolled_back", "rolled back"

    STATUS_FOR_DECISION = {Decision.ALLOW: Status.APPROVED, Decision.REVIEW: Status.PENDING,
                           Decision.BLOCK: Status.BLOCKED}
    OUTCOMES = (Status.EXECUTED, Status.FAILED, Status.ROLLED_BACK)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="action_requests")
    token = models.ForeignKey(AgentToken, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    created_at = models.DateTimeField(db_index=True)

    # The proposal, as the agent sent it.
    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="+")
    operation = models.CharField(max_length=80)
    kind = models.CharField(max_length=10, choices=AccessKind.choices)
    target = models.CharField(max_length=300, blank=True)
    summary = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True)
    content = models.TextField(blank=True)
    amount = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    sources = models.JSONField(default=list, blank=True)
    prompt = models.TextField(blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    tokens = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)

    # The gate's judgement and what an auditor needs to replay it.
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reasons = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices)
    sampled = models.BooleanField(default=False)
    route_to_group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+")
    policy_version = models.PositiveIntegerField()
    fired_guardrail_ids = models.JSONField(default=list, blank=True)
    proposal_sha256 = models.CharField(max_length=64)
    due_at = models.DateTimeField(null=True, blank=True)

    # The review (the inbox issue builds the pages on these).
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    claimed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    edited_changes = models.JSONField(null=True, blank=True)
    edited_content = models.TextField(null=True, blank=True)

    # What the agent reported afterwards.
    outcome_detail = models.TextField(blank=True)
    outcome_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "idempotency_key"],
                                    condition=Q(idempotency_key__isnull=False),
                                    name="action_idempotency_key_unique_per_agent"),
        ]
        indexes = [
            # blast radius: execute actions allowed in the last hour
            models.Index(fields=["agent", "created_at"], name="action_allowed_writes",
                         condition=Q(kind="execute", decision="allow")),
            # monthly spend of an agent
            models.Index(fields=["agent", "created_at"], name="action_agent_recent"),
            # the inbox: pending items by due time
            models.Index(fields=["due_at", "id"], name="action_pending_due",
                         condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.operation} in {self.system_id} ({self.decision})"

    @property
    def final_changes(self) -> dict:
        return self.edited_changes if self.edited_changes is not None else self.changes

    @property
    def final_content(self) -> str:
        return self.edited_content if self.edited_content is not None else self.content
