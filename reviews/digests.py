"""Telling reviewers what waits for them: an e-mail digest, at most one an hour per person,
and only when something new waits (an item newer than the last one their digest named).

`pending_for_user` is the one answer to "which pending items may this person decide"; the
digest, the dashboard and anything else that counts a person's work use it.
"""

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import get_objects_for_user

from agents.models import Agent
from portal import audit
from portal.permissions import REVIEW_AGENT
from reviews.mail import absolute_url, mail_after_commit
from reviews.models import ActionRequest, ReviewerDigest

logger = logging.getLogger(__name__)
User = get_user_model()

DIGEST_INTERVAL = timedelta(hours=1)
DIGEST_MAX_ITEMS = 50  # listed in one e-mail; the rest are counted


def pending_for_user(*, user) -> QuerySet[ActionRequest]:
    """The pending items `user` may decide, oldest due first.

    The same rule as `reviews.services.can_review`, as one query however many items wait: an
    item routed to a group is decided by the group's members (and superusers); any other item
    by the agent's reviewers — `review_agent` on the agent (directly or through a group) or
    model-wide (Admins). Inactive users may decide nothing.
    """
    pending = ActionRequest.objects.filter(status=ActionRequest.Status.PENDING)
    if user is None or not user.is_authenticated or not user.is_active:
        return pending.none()
    if not user.is_superuser:
        routed = Q(route_to_group__in=user.groups.values("pk"))
        if user.has_perm(REVIEW_AGENT):
            unrouted = Q(route_to_group__isnull=True)
        else:
            reviewable = get_objects_for_user(user, REVIEW_AGENT, klass=Agent,
                                              accept_global_perms=False)
            unrouted = Q(route_to_group__isnull=True, agent__in=reviewable.values("pk"))
        pending = pending.filter(routed | unrouted)
    return pending.order_by("due_at", "id")


def _digest_candidates() -> QuerySet:
    """Active users with an e-mail address who may be able to decide some pending item.

    A superset is harmless (each candidate's items come from `pending_for_user`); a person
    missing here would never be told, so every way of holding the right is listed.
    """
    pending = ActionRequest.objects.filter(status=ActionRequest.Status.PENDING).order_by()
    memberships = User.groups.through.objects
    who = Q(pk__in=memberships.filter(
        group__in=pending.filter(route_to_group__isnull=False).values("route_to_group"),
    ).values("user"))
    unrouted_agents = [str(pk) for pk in pending.filter(route_to_group__isnull=True)
                       .values_list("agent_id", flat=True).distinct()]
    if unrouted_agents:
        review = Permission.objects.get(content_type__app_label="agents",
                                        codename=REVIEW_AGENT.split(".")[1])
        granted_groups = GroupObjectPermission.objects.filter(
            permission=review, object_pk__in=unrouted_agents).values("group")
        who |= (Q(pk__in=User.user_permissions.through.objects.filter(permission=review)
                  .values("user"))
                | Q(pk__in=memberships.filter(group__permissions=review).values("user"))
                | Q(pk__in=UserObjectPermission.objects.filter(
                    permission=review, object_pk__in=unrouted_agents).values("user"))
                | Q(pk__in=memberships.filter(group__in=granted_groups).values("user")))
    if pending.exists():
        who |= Q(is_superuser=True)
    return User.objects.filter(who, is_active=True).exclude(email="").order_by("pk")


def reviewer_digests_send(*, now=None) -> list[str]:
    """E-mail each person what waits for them; returns the usernames that were sent one.

    Someone gets a digest when their last one is at least an hour old (or there was none) and
    an item they may decide is newer than the newest one it named. Run by beat; running it
    twice, or twice at once, sends nothing more (the person's ReviewerDigest row is locked).
    """
    now = now or timezone.now()
    candidates = list(_digest_candidates())
    digests = {digest.user_id: digest for digest in
               ReviewerDigest.objects.filter(user__in=[user.pk for user in candidates])}
    sent = []
    for user in candidates:
        digest = digests.get(user.pk)
        if digest is not None and now - digest.last_sent_at < DIGEST_INTERVAL:
            continue
        last_item_id = digest.last_item_id if digest else 0
        items = pending_for_user(user=user)
        totals = items.aggregate(newest=Max("id"), count=Count("id"))
        if not totals["newest"] or totals["newest"] <= last_item_id:
            continue
        shown = list(items.select_related("agent")[:DIGEST_MAX_ITEMS])
        count = totals["count"]
        try:
            if _digest_send(user=user, now=now, newest=totals["newest"],
                            subject=f"[Steward] {count} item{'s' if count > 1 else ''} "
                                    f"wait{'' if count > 1 else 's'} for your review",
                            message=_digest_message(items=shown, total=count, now=now,
                                                    last_item_id=last_item_id)):
                sent.append(user.get_username())
        except IntegrityError:  # another run created this person's row first: it told them
            logger.info("Digest for %s was sent by a concurrent run.", user.get_username())
    return sent


@transaction.atomic
def _digest_send(*, user, now, newest: int, subject: str, message: str) -> bool:
    """Note that `user` is told up to item `newest` and mail them after commit; False (and
    nothing sent) if another run just did."""
    digest = ReviewerDigest.objects.select_for_update().filter(user=user).first()
    if digest is not None and (now - digest.last_sent_at < DIGEST_INTERVAL
                               or newest <= digest.last_item_id):
        return False
    if digest is None:
        digest = ReviewerDigest.objects.create(user=user, last_sent_at=now, last_item_id=newest)
    else:
        digest.user = user  # named in the audit event; already loaded
        digest.last_sent_at, digest.last_item_id = now, newest
        digest.save(update_fields=["last_sent_at", "last_item_id"])
    audit.record(actor=None, verb="reviewer.digest_sent", obj=digest,
                 data={"user": user.get_username(), "newest_item": newest})
    mail_after_commit(subject=subject, message=message, recipients=[user.email])
    return True


def _digest_message(*, items: list[ActionRequest], total: int, now, last_item_id: int) -> str:
    lines = [f"{total} item{'s' if total > 1 else ''} wait{'' if total > 1 else 's'} for your "
             "review in Steward, oldest due first:", ""]
    for item in items:
        due = "no due time"
        if item.due_at:
            due = "due " + timezone.localtime(item.due_at).strftime("%Y-%m-%d %H:%M %Z")
            if item.due_at < now:
                due += " (overdue)"
        new = "[new] " if item.id > last_item_id else ""
        lines += [f"- {new}{item.agent.name}: {item.summary or item.operation} — {due}",
                  f"  {absolute_url(reverse('reviews:item', args=[item.public_id]))}"]
    if total > len(items):
        lines.append(f"… and {total - len(items)} more.")
    lines += ["", f"Your inbox: {absolute_url(reverse('reviews:inbox'))}", "",
              "You receive at most one of these an hour, and only when something new waits."]
    return "\n".join(lines)
