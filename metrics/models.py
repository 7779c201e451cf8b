"""Metrics: the catalogue, targets, observations, imports, rollups and scorecard reviews.

Observations come from three places: uploaded files (`ImportBatch`, worked by a Celery task),
the agent API (`POST /api/v1/observations`), and Steward itself (derived metrics computed from
action requests and incidents). Scorecard pages read `Rollup` only.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from agents.models import Agent


class Metric(models.Model):
    class Layer(models.TextChoices):
        BUSINESS = "business", "Business outcome"
        QUALITY = "quality", "Quality"
        TRUST = "trust", "Trust"
        COST = "cost", "Cost"

    class Aggregation(models.TextChoices):
        MEAN = "mean", "Mean"
        SUM = "sum", "Sum"
        LAST = "last", "Last value"

    key = models.SlugField(max_length=60, unique=True,
                           help_text="What files and the API call it, e.g. cycle_time.")
    name = models.CharField(max_length=120)
    layer = models.CharField(max_length=10, choices=Layer.choices)
    unit = models.CharField(max_length=20, blank=True, help_text="%, hours, USD, count…")
    description = models.TextField(blank=True)
    higher_is_better = models.BooleanField(default=True)
    aggregation = models.CharField(max_length=4, choices=Aggregation.choices,
                                   default=Aggregation.MEAN,
                                   help_text="How a week or a month of observations is summed up.")
    min_value = models.FloatField(null=True, blank=True,
                                  help_text="Values below are rejected on import.")
    max_value = models.FloatField(null=True, blank=True,
                                  help_text="Values above are rejected on import.")
    derived = models.BooleanField(
        default=False, help_text="Computed by Steward from the gate and the inbox; not imported.")
    headline = models.BooleanField(
        default=False, help_text="Shown for its layer on the fleet scorecard (one per layer).")
    builtin = models.BooleanField(default=False, editable=False)
    position = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["position", "key"]
        constraints = [
            models.UniqueConstraint(fields=["layer"], condition=Q(headline=True),
                                    name="metric_one_headline_per_layer"),
            models.CheckConstraint(
                condition=Q(min_value__isnull=True) | Q(max_value__isnull=True)
                | Q(min_value__lte=models.F("max_value")),
                name="metric_min_not_above_max"),
        ]

    def __str__(self) -> str:
        return self.name

    def range_text(self) -> str:
        if self.min_value is not None and self.max_value is not None:
            return f"between {self.min_value:g} and {self.max_value:g}"
        if self.min_value is not None:
            return f"at least {self.min_value:g}"
        if self.max_value is not None:
            return f"at most {self.max_value:g}"
        return "any number"


class Target(models.Model):
    """What the owners aim for, and what a person doing the same work achieves."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="targets")
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="targets")
    target = models.FloatField(null=True, blank=True)
    human_baseline = models.FloatField(null=True, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "metric"],
                                               name="target_one_per_agent_metric")]

    def __str__(self) -> str:
        return f"{self.agent} · {self.metric}"


class ImportBatch(models.Model):
    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSON = "json", "JSON"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        DUPLICATE = "duplicate", "Already imported"

    class Origin(models.TextChoices):
        UPLOAD = "upload", "File upload"
        API = "api", "API"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    file = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=4, choices=Format.choices)
    origin = models.CharField(max_length=6, choices=Origin.choices, default=Origin.UPLOAD)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    # progress, written by the task as it goes
    bytes_read = models.BigIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_imported = models.PositiveIntegerField(default=0, help_text="New observations.")
    rows_updated = models.PositiveIntegerField(default=0,
                                               help_text="Observations that existed already.")
    rows_rejected = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, help_text="Why the whole batch failed, if it did.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="import_batches")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="import_batches",
                              help_text="The agent that pushed it through the API.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # the same file is imported once: a second upload is marked a duplicate
            models.UniqueConstraint(fields=["sha256"], condition=Q(origin="upload") & ~Q(
                status__in=["duplicate", "failed"]), name="importbatch_one_live_per_sha256"),
        ]

    def __str__(self) -> str:
        return self.original_name or f"Import {self.public_id}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED, self.Status.DUPLICATE)

    @property
    def progress_percent(self) -> int:
        if self.finished:
            return 100
        if not self.size_bytes:
            return 0
        return min(99, int(self.bytes_read * 100 / self.size_bytes))


class ImportRowError(models.Model):
    """One rejected row: where it was and what was wrong, as the batch page lists it."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="row_errors")
    row = models.PositiveIntegerField(help_text="1 is the first data row.")
    column = models.CharField(max_length=40, blank=True)
    message = models.CharField(max_length=300)

    class Meta:
        ordering = ["batch", "row", "id"]
        indexes = [models.Index(fields=["batch", "row"], name="importrowerror_batch_row")]

    def __str__(self) -> str:
        return f"row {self.row} {self.column}: {self.message}"


class Observation(models.Model):
    """One value of one metric for one agent at one time. The natural key makes a second
    report of the same observation an update, not a duplicate."""

    # Millions of rows arrive by COPY: the importer checks every id itself, and Django still
    # cascades and protects on delete, so the database keeps no foreign-key constraints here
    # (checking them row by row at commit doubled an import's time) and no single-column
    # indexes (the natural key serves every lookup).
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="observations",
                              db_constraint=False, db_index=False)
    metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="observations",
                               db_constraint=False, db_index=False)
    observed_at = models.DateTimeField()
    value = models.FloatField()
    source = models.CharField(max_length=60, blank=True, default="",
                              help_text="Where the number comes from; part of the natural key.")
    batch = models.ForeignKey(ImportBatch, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="observations", db_constraint=False,
                              db_index=False)

    class Meta:
        constraints = [
            # One index for both jobs: the natural key (ON CONFLICT infers it by its columns,
            # in any order), and, led by (agent, observed_at) and carrying the value, the
            # index-only scans of the time-bucket queries. Two indexes cost an import of a
            # million rows about three times the upkeep of one (tests/perf/metrics_import.py).
            models.UniqueConstraint(fields=["agent", "observed_at", "metric", "source"],
                                    include=["value"], name="observation_natural_key"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.metric_id} {self.observed_at:%Y-%m-%d} = {self.value:g}"


class Rollup(models.Model):
    class Grain(models.TextChoices):
        WEEK = "week", "Week"
        MONTH = "month", "Month"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="rollups")
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="rollups")
    grain = models.CharField(max_length=5, choices=Grain.choices)
    period_start = models.DateField(help_text="Monday of the ISO week, or the 1st of the month.")
    value = models.FloatField()
    count = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["agent", "metric", "grain", "period_start"], name="rollup_natural_key")]
        indexes = [models.Index(fields=["grain", "period_start"], name="rollup_grain_period")]

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.metric_id} {self.grain} {self.period_start} = {self.value:g}"


class ScorecardReview(models.Model):
    """The periodic decision about an agent, taken with its scorecard in front of you."""

    class Decision(models.TextChoices):
        EXPAND = "expand", "Expand"
        KEEP = "keep", "Keep as is"
        REVISE = "revise", "Revise"
        STOP = "stop", "Stop"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="scorecard_reviews")
    grain = models.CharField(max_length=5, choices=Rollup.Grain.choices)
    period_start = models.DateField()
    decision = models.CharField(max_length=6, choices=Decision.choices)
    notes = models.TextField(blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True,
                                 on_delete=models.SET_NULL, related_name="scorecard_reviews")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="scorecardreview_recent")]

    def __str__(self) -> str:
        return f"{self.agent} {self.period_start}: {self.get_decision_display()}"


class Alert(models.Model):
    """A warning sign a detector saw: what, on which agent, since when, and what to do.

    One row per dedupe key (kind + agent + subject): when the sign clears the alert resolves,
    and when it returns the same row reopens, so its history stays in one place.
    """

    class Kind(models.TextChoices):
        SPEED_QUALITY = "speed_quality", "Speed up, quality down"
        ADOPTION_LOW = "adoption_low", "Adoption low"
        COST_DRIFT = "cost_drift", "Cost drift"
        OVERRIDE_SPIKE = "override_spike", "Override spike"
        BLAST_RADIUS = "blast_radius", "Blast radius hit"
        REVIEW_BACKLOG = "review_backlog", "Review backlog"
        STALE_DATA = "stale_data", "Stale or orphan data"
        UNCLEAR_OWNERSHIP = "unclear_ownership", "Unclear ownership"
        INCIDENTS_UNREVIEWED = "incidents_unreviewed", "Incidents unreviewed"
        DECISIONS_UNREVIEWED = "decisions_unreviewed", "Decisions unreviewed"
        AUTONOMY_WITHOUT_EVIDENCE = "autonomy_without_evidence", "Autonomy without evidence"
        RUBBER_STAMPING = "rubber_stamping", "Rubber-stamping"
        BUDGET = "budget", "Budget"

    class Severity(models.TextChoices):
        INFO = "info", "info"
        WARNING = "warning", "warning"
        CRITICAL = "critical", "critical"

    class Status(models.TextChoices):
        OPEN = "open", "open"
        ACKNOWLEDGED = "acknowledged", "acknowledged"
        RESOLVED = "resolved", "resolved"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="alerts")
    subject = models.CharField(max_length=120, blank=True,
                               help_text="What else the alert is about: a source, a reviewer.")
    dedupe_key = models.CharField(max_length=200, unique=True)
    severity = models.CharField(max_length=10, choices=Severity.choices,
                                default=Severity.WARNING)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=200, help_text="What was seen, in one line.")
    message = models.TextField(blank=True)
    recommendation = models.TextField(blank=True)
    action = models.CharField(max_length=40, blank=True,
                              help_text="The recommended action the portal can start.")
    evidence = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    opened_at = models.DateTimeField(help_text="When it last (re)opened.")
    times_reopened = models.PositiveIntegerField(default=0)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolve_note = models.TextField(blank=True)
    auto_resolved = models.BooleanField(default=False)
    autonomy_change = models.ForeignKey("agents.AutonomyChange", null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="alerts")

    class Meta:
        ordering = ["-last_seen"]
        indexes = [
            models.Index(fields=["status", "severity"], name="alert_status_severity"),
            models.Index(fields=["agent", "status"], name="alert_agent_status"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_active(self) -> bool:
        return self.status != self.Status.RESOLVED


class AlertDelivery(models.Model):
    """One notification of an alert: an e-mail to a person or a post to a chat webhook."""

    class Channel(models.TextChoices):
        EMAIL = "email", "e-mail"
        WEBHOOK = "webhook", "webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="+")
    recipient = models.CharField(max_length=500, help_text="An address or a webhook URL.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["channel", "status"], name="alert_delivery_status"),
            models.Index(fields=["user", "channel", "sent_at"], name="alert_delivery_user"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient} ({self.status})"
