"""The agent registry: who an agent is, who owns it, what it may touch and how to undo it."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

User = settings.AUTH_USER_MODEL


class AccessKind(models.TextChoices):
    """Kinds of action, from least to most powerful: access to one implies the ones before."""

    READ = "read", "read"
    DRAFT = "draft", "draft"
    RECOMMEND = "recommend", "recommend"
    EXECUTE = "execute", "execute"

    @classmethod
    def rank(cls, kind: str) -> int:
        return list(cls.values).index(kind)


class System(models.Model):
    """A tool agents touch: the CRM, the helpdesk, billing..."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DataSource(models.Model):
    """A body of data an agent may draw on; it must be approved, maintained and fresh."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    approved = models.BooleanField(default=False)
    maintainer = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="maintained_sources")
    refreshed_at = models.DateTimeField(null=True, blank=True)
    max_age = models.DurationField(null=True, blank=True,
                                   help_text="How old the data may be before it is stale.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def is_stale(self, now=None) -> bool:
        if self.max_age is None:
            return False
        if self.refreshed_at is None:
            return True
        return (now or timezone.now()) - self.refreshed_at > self.max_age


# Pages under /metrics/ and /agents/ that an agent's slug would hide (/metrics/<slug>/).
RESERVED_AGENT_SLUGS = frozenset({"imports", "alerts", "new"})


def validate_agent_slug(value: str) -> None:
    if value in RESERVED_AGENT_SLUGS:
        raise ValidationError(f"'{value}' is the name of a page in Steward; choose another slug.")


class Agent(models.Model):
    class Status(models.TextChoices):
        PROPOSED = "proposed", "proposed"
        PILOT = "pilot", "pilot"
        LIVE = "live", "live"
        PAUSED = "paused", "paused"
        RETIRED = "retired", "retired"

    class Autonomy(models.IntegerChoices):
        L1 = 1, "L1 · drafts, a person approves every action"
        L2 = 2, "L2 · low-risk actions run, a sample is reviewed"
        L3 = 3, "L3 · acts alone inside strict policy"
        L4 = 4, "L4 · coordinates across systems, exceptions monitored"

    class Cadence(models.TextChoices):
        WEEKLY = "weekly", "weekly"
        MONTHLY = "monthly", "monthly"

    slug = models.SlugField(unique=True, validators=[validate_agent_slug],
                            help_text="Lower-case letters, digits and hyphens.")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    business_outcome = models.CharField(
        max_length=300, blank=True,
        help_text="One sentence: the business result this agent exists for.")
    definition_of_done = models.TextField(
        blank=True, help_text="When is one piece of the agent's work finished?")
    workflow = models.CharField(max_length=80, blank=True,
                                help_text="The business process it works in, e.g. support.")
    autonomy_level = models.PositiveSmallIntegerField(choices=Autonomy.choices,
                                                      default=Autonomy.L1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROPOSED,
                              db_index=True)
    business_owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Owns the outcome.")
    process_owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Owns the workflow and adoption.")
    technical_owner = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Owns integrations and reliability.")
    pausers = models.ManyToManyField(User, blank=True, related_name="pausable_agents",
                                     help_text="People besides the owners who may pause it.")
    sources = models.ManyToManyField(DataSource, blank=True, related_name="agents")
    review_sample_rate = models.FloatField(
        default=0.1, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="L2: share of allowed execute actions sampled for review afterwards (0–1).")
    confidence_review_below = models.FloatField(
        default=0.7, validators=[MinValueValidator(0), MaxValueValidator(1)])
    confidence_block_below = models.FloatField(
        default=0.3, validators=[MinValueValidator(0), MaxValueValidator(1)])
    max_writes_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blast radius: writes an hour before review kicks in.")
    monthly_cost_budget = models.DecimalField(max_digits=12, decimal_places=2, null=True,
                                              blank=True, help_text="USD a month.")
    review_cadence = models.CharField(max_length=10, choices=Cadence.choices,
                                      default=Cadence.WEEKLY)
    review_sla_hours = models.PositiveSmallIntegerField(
        default=24, help_text="How long a reviewer has for an item of this agent.")
    callback_url = models.URLField(
        blank=True, help_text="Steward POSTs each review decision here, signed with "
        "HMAC-SHA256 (see the README).")
    callback_secret = models.CharField(max_length=64, blank=True,
                                       help_text="The key of the callback's signature.")
    alert_webhook_url = models.URLField(
        blank=True, help_text="A Slack-compatible incoming webhook told of this agent's "
        "alerts (besides the global one, if set).")
    auto_pause_on_critical = models.BooleanField(
        default=False, help_text="Pause the agent by itself when a critical alert fires "
        "(blast radius, or an override spike above the hard limit).")
    auto_step_down = models.BooleanField(
        default=False, help_text="Lower autonomy by one level by itself when speed rises "
        "while quality falls, or overrides spike.")
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    pause_reason = models.TextField(blank=True)
    status_before_pause = models.CharField(max_length=10, choices=Status.choices, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    policy_version = models.PositiveIntegerField(
        default=1, help_text="Raised on every change the gate judges by; each decision "
        "records the version it was made under.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("review_agent", "Can review the agent's actions"),
            ("pause_agent", "Can pause, resume and retire the agent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence_block_below__lte=models.F("confidence_review_below")),
                name="agent_block_below_review_threshold",
            ),
            models.CheckConstraint(condition=Q(autonomy_level__gte=1, autonomy_level__lte=4),
                                   name="agent_autonomy_level_1_to_4"),
            models.CheckConstraint(condition=Q(review_sample_rate__gte=0,
                                               review_sample_rate__lte=1),
                                   name="agent_sample_rate_0_to_1"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("agents:detail", args=[self.slug])

    @property
    def owners(self) -> dict:
        return {"business": self.business_owner, "process": self.process_owner,
                "technical": self.technical_owner}

    @property
    def is_paused(self) -> bool:
        return self.status == self.Status.PAUSED


class SystemAccess(models.Model):
    """Least privilege: the most powerful kind of action the agent may take in a system."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="accesses")
    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="accesses")
    max_kind = models.CharField(max_length=10, choices=AccessKind.choices)

    class Meta:
        ordering = ["system__name"]
        constraints = [models.UniqueConstraint(fields=["agent", "system"],
                                               name="one_access_per_agent_system")]
        verbose_name_plural = "system accesses"

    def __str__(self) -> str:
        return f"{self.system}: up to {self.max_kind}"

    @property
    def allowed_kinds(self) -> list[str]:
        return list(AccessKind.values)[: AccessKind.rank(self.max_kind) + 1]


class Guardrail(models.Model):
    """A specific rule: when `field operator value` holds for an action, review or block it."""

    class Operator(models.TextChoices):
        CHANGED = "changed", "is changed"
        EQ = "eq", "equals"
        NE = "ne", "does not equal"
        GT = "gt", "is greater than"
        GTE = "gte", "is at least"
        LT = "lt", "is less than"
        LTE = "lte", "is at most"
        IN = "in", "is one of"
        CONTAINS = "contains", "contains"

    class Effect(models.TextChoices):
        REVIEW = "review", "send to review"
        BLOCK = "block", "block"

    BASE_FIELDS = ("amount", "confidence", "operation", "target", "kind")

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="guardrails")
    name = models.CharField(max_length=160)
    system = models.ForeignKey(System, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+", help_text="Only actions in this system.")
    operation = models.CharField(max_length=80, blank=True,
                                 help_text="Only this operation (blank: any).")
    field = models.CharField(
        max_length=80,
        help_text="amount, confidence, operation, target, kind or changes.<field name>")
    operator = models.CharField(max_length=10, choices=Operator.choices)
    value = models.JSONField(null=True, blank=True)
    effect = models.CharField(max_length=10, choices=Effect.choices, default=Effect.REVIEW)
    route_to_group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+",
                                       help_text="Send the review to this group only.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["agent", "name"],
                                               name="guardrail_name_unique_per_agent")]

    def __str__(self) -> str:
        return self.name

    NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte")

    def clean(self) -> None:
        """Check that `field operator value` is a rule the policy engine can evaluate."""
        errors = {}
        field = (self.field or "").strip()
        if field.startswith("changes."):
            if not field.removeprefix("changes.").strip():
                errors["field"] = "Name the changed field after 'changes.', e.g. changes.stage."
        elif field not in self.BASE_FIELDS:
            errors["field"] = (f"Unknown field '{field}'. Use one of "
                               f"{', '.join(self.BASE_FIELDS)} or changes.<field name>.")
        op, value = self.operator, self.value
        if op == self.Operator.CHANGED:
            if not field.startswith("changes."):
                errors["operator"] = "'changed' only applies to changes.<field name>."
            self.value = None
        elif op in self.NUMERIC_OPERATORS:
            if isinstance(value, str):
                try:
                    value = float(value)
                    self.value = int(value) if value.is_integer() else value
                except ValueError:
                    pass
            if isinstance(self.value, bool) or not isinstance(self.value, int | float):
                errors["value"] = f"'{op}' compares numbers: give a number, e.g. 500."
        elif op == self.Operator.IN:
            if isinstance(value, str):
                self.value = [item.strip() for item in value.split(",") if item.strip()]
            if not isinstance(self.value, list) or not self.value:
                errors["value"] = "'in' needs a list of values, e.g. won, lost."
        elif op in (self.Operator.EQ, self.Operator.NE, self.Operator.CONTAINS) and (
                value is None or value == ""):
                errors["value"] = f"'{op}' needs a value to compare with."
        if self.route_to_group_id and self.effect != self.Effect.REVIEW:
            errors["route_to_group"] = "Only a review can be routed to a group."
        if errors:
            raise ValidationError(errors)

    def sentence(self) -> str:
        """The rule in words, e.g. "If amount is greater than 500 in Helpdesk: send to review"."""
        scope = []
        if self.operation:
            scope.append(f"operation {self.operation}")
        if self.system_id:
            scope.append(f"in {self.system}")
        condition = f"{self.field} {self.get_operator_display()}"
        if self.operator != self.Operator.CHANGED:
            value = ", ".join(map(str, self.value)) if isinstance(self.value, list) else self.value
            condition += f" {value}"
        where = f" ({' '.join(scope)})" if scope else ""
        then = self.get_effect_display()
        if self.route_to_group_id:
            then += f" by {self.route_to_group.name}"
        return f"If {condition}{where}: {then}."


class RollbackStep(models.Model):
    """One step of the runbook that undoes the agent's work."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="rollback_steps")
    position = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=160)
    instructions = models.TextField()

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["agent", "position"],
                                               name="rollback_step_position_unique")]

    def __str__(self) -> str:
        return f"{self.position}. {self.title}"


class AgentToken(models.Model):
    """A bearer token for the agent API. Only the SHA-256 of the secret is stored."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True,
                              help_text="The token's first characters, to recognise it.")
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    LAST_USED_GRANULARITY = timedelta(minutes=1)


class AutonomyChange(models.Model):
    """A request to move an agent's autonomy level, with the evidence that justifies it.

    Raising autonomy only happens through an approved change (the business owner decides,
    never the requester); lowering may also be opened by an alert or applied by the system.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        WITHDRAWN = "withdrawn", "withdrawn"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="autonomy_changes")
    from_level = models.PositiveSmallIntegerField(choices=Agent.Autonomy.choices)
    to_level = models.PositiveSmallIntegerField(choices=Agent.Autonomy.choices)
    reason = models.TextField()
    evidence = models.JSONField(default=dict, blank=True,
                                help_text="Quality and trust figures of the last periods.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", help_text="Empty when Steward asked.")
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["agent", "status"], name="autonomy_change_agent")]
        constraints = [
            models.CheckConstraint(condition=~Q(from_level=models.F("to_level")),
                                   name="autonomy_change_moves"),
        ]

    def __str__(self) -> str:
        return f"{self.agent}: L{self.from_level} → L{self.to_level} ({self.status})"

    @property
    def is_raise(self) -> bool:
        return self.to_level > self.from_level


class PolicyVersion(models.Model):
    """What the gate judged by after one save of an agent's policy, and what changed."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="policy_versions")
    number = models.PositiveIntegerField(help_text="The agent's policy_version after the save.")
    policy = models.JSONField(help_text="Access, guardrails, thresholds, autonomy, sources.")
    diff = models.JSONField(default=list, blank=True,
                            help_text="Changes against the previous version.")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [models.UniqueConstraint(fields=["agent", "number"],
                                               name="policy_version_per_agent")]

    def __str__(self) -> str:
        return f"{self.agent} policy v{self.number}"


class RolloutTask(models.Model):
    """One task of an agent's 30-day rollout plan (created from a template at registration)."""

    class OwnerRole(models.TextChoices):
        BUSINESS = "business", "Business owner"
        PROCESS = "process", "Process owner"
        TECHNICAL = "technical", "Technical owner"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="rollout_tasks")
    week = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(4)])
    position = models.PositiveSmallIntegerField(default=0)
    key = models.SlugField(max_length=60, help_text="The template task it came from.")
    title = models.CharField(max_length=200)
    owner_role = models.CharField(max_length=10, choices=OwnerRole.choices)
    auto_check = models.CharField(max_length=60, blank=True,
                                  help_text="A check Steward runs itself; empty for manual tasks.")
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")

    class Meta:
        ordering = ["agent", "week", "position"]
        constraints = [models.UniqueConstraint(fields=["agent", "key"],
                                               name="rollout_task_per_agent")]

    def __str__(self) -> str:
        return f"{self.agent} week {self.week}: {self.title}"
