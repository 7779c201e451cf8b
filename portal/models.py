from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import F
from django.utils import timezone


class User(AbstractUser):
    """A person who uses the portal. Agents authenticate with tokens, not as users."""

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.get_full_name() or self.username


class AuditEvent(models.Model):
    """One entry of the append-only audit trail.

    The request path only inserts (seq/prev_hash/hash empty). The `audit_seal` task later gives
    each event its place in the SHA-256 chain; on PostgreSQL a trigger refuses every other
    UPDATE, every DELETE and TRUNCATE (migration 0002).
    """

    class ActorType(models.TextChoices):
        USER = "user", "user"
        AGENT = "agent", "agent"
        SYSTEM = "system", "system"

    seq = models.BigIntegerField(null=True, blank=True, unique=True,
                                 help_text="Position in the hash chain, set when sealed.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    # No database-level FKs: users and agents may be renamed, the trail must never change.
    # agent and actor_user: served by audit_agent_recent and audit_actor_recent (every write
    # of Steward inserts an event; no index more than the reads need)
    actor_user = models.ForeignKey("portal.User", null=True, blank=True, related_name="+",
                                   on_delete=models.DO_NOTHING, db_constraint=False,
                                   db_index=False)
    actor_label = models.CharField(max_length=150)
    verb = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, related_name="+",
                              on_delete=models.DO_NOTHING, db_constraint=False, db_index=False)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["agent", "-id"], name="audit_agent_recent"),
            models.Index(fields=["actor_user", "-id"], name="audit_actor_recent"),
            models.Index(fields=["id"], name="audit_unsealed",
                         condition=models.Q(seq__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.verb} {self.object_repr} by {self.actor_label}"


class AuditChainHead(models.Model):
    """The single row that holds the chain head; sealing locks it (SELECT ... FOR UPDATE)."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)
    sealed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class TaskDelivery(models.Model):
    """How many times a Celery task id has been started (see portal.tasking)."""

    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    deliveries = models.PositiveIntegerField(default=0)
    first_started_at = models.DateTimeField(default=timezone.now)
    last_started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    gave_up = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "task deliveries"

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] × {self.deliveries}"

    @classmethod
    def begin(cls, *, task_id: str, task_name: str) -> int:
        """Count one more delivery, committed at once so a crash cannot lose it."""
        now = timezone.now()
        cls.objects.get_or_create(task_id=task_id, defaults={"task_name": task_name})
        cls.objects.filter(task_id=task_id).update(
            deliveries=F("deliveries") + 1, last_started_at=now)
        return cls.objects.values_list("deliveries", flat=True).get(task_id=task_id)

    @classmethod
    def finish(cls, *, task_id: str) -> None:
        cls.objects.filter(task_id=task_id).update(finished_at=timezone.now())

    @classmethod
    def purge_finished(cls, *, older_than) -> int:
        """Forget finished deliveries; a task id redelivered after this starts counting anew."""
        deleted, _ = cls.objects.filter(finished_at__lt=timezone.now() - older_than).delete()
        return deleted

    @classmethod
    def give_up(cls, *, task_id: str) -> None:
        cls.objects.filter(task_id=task_id).update(gave_up=True, finished_at=timezone.now())
