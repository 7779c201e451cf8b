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
    # The gate inserts a row per call: no index it does not need. `agent` is served by the
    # (agent, …) indexes below; the people and the group, mostly empty, by partial ones.
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="action_requests",
                              db_index=False)
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
                                       related_name="+", db_index=False)
    policy_version = models.PositiveIntegerField()
    fired_guardrail_ids = models.JSONField(default=list, blank=True)
    proposal_sha256 = models.CharField(max_length=64)
    due_at = models.DateTimeField(null=True, blank=True)

    # The review (the inbox issue builds the pages on these).
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+", db_index=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+", db_index=False)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    edited_changes = models.JSONField(null=True, blank=True)
    edited_content = models.TextField(null=True, blank=True)

    # SLA: past due_at the item is escalated once, and expires later (reviews.tasks).
    escalated_at = models.DateTimeField(null=True, blank=True)

    # After-the-fact review of a sampled (allowed) action.
    class SampleVerdict(models.TextChoices):
        LOOKS_RIGHT = "looks_right", "looks right"
        FLAGGED = "flagged", "problem flagged"

    sample_verdict = models.CharField(max_length=12, choices=SampleVerdict.choices, blank=True)
    sample_checked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                          on_delete=models.PROTECT, related_name="+",
                                          db_index=False)
    sample_checked_at = models.DateTimeField(null=True, blank=True)

    # The decision callback to the agent (reviews.callbacks).
    class CallbackStatus(models.TextChoices):
        NONE = "", "no callback"
        PENDING = "pending", "sending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    callback_status = models.CharField(max_length=10, choices=CallbackStatus.choices,
                                       blank=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    callback_error = models.TextField(blank=True)
    callback_at = models.DateTimeField(null=True, blank=True)

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
            # sampled items not yet checked
            models.Index(fields=["due_at", "id"], name="action_sampled_unchecked",
                         condition=Q(sampled=True, sample_verdict="")),
            # derived metrics: what people decided on each day
            models.Index(fields=["reviewed_at"], name="action_reviewed_at",
                         condition=Q(reviewed_by__isnull=False)),
            # who holds or decided what (deleting a user checks these), only where set
            models.Index(fields=["claimed_by"], name="action_claimed_by",
                         condition=Q(claimed_by__isnull=False)),
            models.Index(fields=["reviewed_by"], name="action_reviewed_by",
                         condition=Q(reviewed_by__isnull=False)),
            models.Index(fields=["sample_checked_by"], name="action_sample_checked_by",
                         condition=Q(sample_checked_by__isnull=False)),
            models.Index(fields=["route_to_group"], name="action_route_to_group",
                         condition=Q(route_to_group__isnull=False)),
        ]

    def __str__(self) -> str:
        # No related lookups here: the gate computes this on its hot path.
        return f"{self.operation} ({self.kind}, {self.decision})"

    @property
    def final_changes(self) -> dict:
        return self.edited_changes if self.edited_changes is not None else self.changes

    @property
    def final_content(self) -> str:
        return self.edited_content if self.edited_content is not None else self.content


class Incident(models.Model):
    """A problem someone reported with what an agent did."""

    class Category(models.TextChoices):
        WRONG_RECORD = "wrong_record", "wrong record"
        POLICY_BREACH = "policy_breach", "policy breach"
        STALE_DATA = "stale_data", "stale data"
        FACTUAL_ERROR = "factual_error", "factual error"
        TONE = "tone", "tone"
        COST = "cost", "cost"
        OTHER = "other", "other"

    class Severity(models.TextChoices):
        LOW = "low", "low"
        MEDIUM = "medium", "medium"
        HIGH = "high", "high"
        CRITICAL = "critical", "critical"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        INVESTIGATING = "investigating", "investigating"
        RESOLVED = "resolved", "resolved"

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="incidents")
    action_request = models.ForeignKey(ActionRequest, null=True, blank=True,
                                       on_delete=models.PROTECT, related_name="incidents")
    category = models.CharField(max_length=16, choices=Category.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices,
                                default=Severity.MEDIUM)
    description = models.TextField()
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN,
                              db_index=True)
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    reported_at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.PROTECT, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_note = models.TextField(blank=True)
    rollback_steps_done = models.JSONField(
        default=list, blank=True, help_text="Ids of the agent's rollback steps that were run.")

    class Meta:
        ordering = ["-reported_at"]
        indexes = [models.Index(fields=["agent", "-reported_at"], name="incident_agent_recent")]

    def __str__(self) -> str:
        return f"{self.get_category_display()} on {self.agent}"

    @property
    def rollback_run(self) -> bool:
        return bool(self.rollback_steps_done)


class ReviewerDigest(models.Model):
    """When a reviewer was last told what waits for them (at most one e-mail an hour)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="review_digest")
    last_sent_at = models.DateTimeField()
    last_item_id = models.BigIntegerField(default=0,
                                          help_text="Newest pending item the last digest named.")

    def __str__(self) -> str:
        return f"digest for {self.user}"
