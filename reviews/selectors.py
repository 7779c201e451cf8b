"""Reads for the review pages: the inbox, its filters and counts, and one item with its context.

Who sees what in the inbox (the same rule as `services.can_review`): an item routed to a group
is for that group's members only, even when the user reviews its agent; every other item is
for the agent's reviewers (`agents.review_agent` on the agent, directly or through a group, or
model-wide for Admins). Superusers see everything; inactive users nothing.

The inbox stays fast with 100,000 pending rows: the Waiting and Sampled tabs walk the partial
indexes `action_pending_due` / `action_sampled_unchecked` in (due_at, id) order and page with
a keyset (`?after=<due_at>,<id>`), never OFFSET, and nothing counts every row. On PostgreSQL
the three queries every inbox request makes (the scope, the rows, the badge's bounded count)
are plain SQL built here: compiling the equivalent ORM querysets cost more CPU than the rest
of the page. Other databases take the ORM path (`inbox_items`), which is the reference: a
test runs both on PostgreSQL and compares them.
"""

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.models import F, Q, QuerySet, Value
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import get_objects_for_user

from agents.models import Agent, DataSource, Guardrail, System
from portal.models import AuditEvent
from portal.permissions import REVIEW_AGENT, visible_agents
from reviews.models import ActionRequest

PAGE_SIZE = 50
BADGE_LIMIT = 99  # the navigation shows "99+" beyond this

TAB_WAITING, TAB_SAMPLED, TAB_DECIDED = "waiting", "sampled", "decided"
TABS = (TAB_WAITING, TAB_SAMPLED, TAB_DECIDED)
AGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

User = get_user_model()


def _raw_sql() -> bool:
    """Whether this database takes the plain-SQL inbox queries (a test compares both paths)."""
    return connection.vendor == "postgresql"


# --- who may review what ---------------------------------------------------------------------

@dataclass(frozen=True)
class ReviewScope:
    """What a user may decide: every agent (Admins), some agents, and items routed to groups."""

    everything: bool  # superuser: every item, routed or not
    all_agents: bool  # review_agent model-wide (Admins)
    agent_ids: tuple  # agents the user reviews through object permissions (user or group)
    group_ids: tuple

    @property
    def is_empty(self) -> bool:
        return not (self.everything or self.all_agents or self.agent_ids or self.group_ids)

    def q(self) -> Q:
        """The condition on ActionRequest rows that this scope may decide."""
        if self.everything:
            return Q()
        unrouted = Q(route_to_group__isnull=True)
        if not self.all_agents:
            unrouted &= Q(agent_id__in=self.agent_ids)
        if self.group_ids:
            return unrouted | Q(route_to_group_id__in=self.group_ids)
        return unrouted


NO_SCOPE = ReviewScope(False, False, (), ())


def review_scope(user) -> ReviewScope:
    """The user's review scope, computed once per request (kept on the user object)."""
    cached = getattr(user, "_steward_review_scope", None)
    if cached is not None:
        return cached
    if not (user.is_authenticated and user.is_active):
        scope = NO_SCOPE
    elif user.is_superuser:
        scope = ReviewScope(True, True, (), tuple(user.groups.values_list("id", flat=True)))
    elif _raw_sql():
        scope = _scope_sql(user)
    else:
        scope = _scope_orm(user)
    user._steward_review_scope = scope
    return scope


def _scope_orm(user) -> ReviewScope:
    agents = get_objects_for_user(user, REVIEW_AGENT, klass=Agent, accept_global_perms=False)
    return ReviewScope(
        everything=False, all_agents=user.has_perm(REVIEW_AGENT),
        agent_ids=tuple(sorted(agents.values_list("id", flat=True))),
        group_ids=tuple(sorted(user.groups.values_list("id", flat=True))))


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _column(model, field: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column)


_MEMBERS = User.groups.through
_USER_PERMS = User.user_permissions.through
_GROUP_PERMS = Group.permissions.through
# One round trip: the user's groups ('g'), whether they hold review_agent model-wide ('p'),
# and the agents they hold it on, directly or through a group ('a'). Django's ModelBackend and
# guardian's ObjectPermissionBackend answer the same question in four queries.
_SCOPE_SQL = f"""
WITH perm AS (
  SELECT p.id, p.content_type_id FROM {_table(Permission)} p
  JOIN django_content_type ct ON ct.id = p.content_type_id
  WHERE p.codename = 'review_agent' AND ct.app_label = 'agents' AND ct.model = 'agent'),
groups AS (
  SELECT m.{_column(_MEMBERS, 'group')} AS id FROM {_table(_MEMBERS)} m
  WHERE m.{_column(_MEMBERS, 'user')} = %(user)s)
SELECT 'g', id::text FROM groups
UNION ALL
SELECT 'p', '' WHERE EXISTS (
    SELECT 1 FROM {_table(_USER_PERMS)} up, perm
    WHERE up.{_column(_USER_PERMS, 'user')} = %(user)s
      AND up.{_column(_USER_PERMS, 'permission')} = perm.id)
  OR EXISTS (
    SELECT 1 FROM {_table(_GROUP_PERMS)} gp, perm
    WHERE gp.{_column(_GROUP_PERMS, 'group')} IN (SELECT id FROM groups)
      AND gp.{_column(_GROUP_PERMS, 'permission')} = perm.id)
UNION ALL
SELECT 'a', uop.object_pk FROM {_table(UserObjectPermission)} uop, perm
WHERE uop.user_id = %(user)s AND uop.permission_id = perm.id
  AND uop.content_type_id = perm.content_type_id
UNION ALL
SELECT 'a', gop.object_pk FROM {_table(GroupObjectPermission)} gop, perm
WHERE gop.group_id IN (SELECT id FROM groups) AND gop.permission_id = perm.id
  AND gop.content_type_id = perm.content_type_id
"""


def _scope_sql(user) -> ReviewScope:
    with connection.cursor() as cursor:
        cursor.execute(_SCOPE_SQL, {"user": user.pk})
        found = cursor.fetchall()
    return ReviewScope(
        everything=False, all_agents=any(kind == "p" for kind, _v in found),
        agent_ids=tuple(sorted({int(v) for kind, v in found if kind == "a" and v.isdigit()})),
        group_ids=tuple(sorted(int(v) for kind, v in found if kind == "g")))


# --- the inbox: filters, cursors -------------------------------------------------------------

@dataclass(frozen=True)
class InboxFilters:
    tab: str = TAB_WAITING
    agent: str = ""  # slug
    system: str = ""  # slug
    reason: str = ""  # a reason code, e.g. "guardrail"
    age: str = ""  # a key of AGES: only items older than that

    @property
    def any(self) -> bool:
        return bool(self.agent or self.system or self.reason or self.age)


def format_stamp(value: datetime | None) -> str:
    """A time for a URL: UTC, microseconds, no "+" to escape."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else ""


def parse_stamp(raw: str) -> datetime | None:
    try:
        return parse_datetime(raw or "")
    except ValueError:
        return None


def _cursor_field(tab: str) -> str:
    return "reviewed_at" if tab == TAB_DECIDED else "due_at"


def encode_cursor(record, tab: str) -> str:
    return f"{format_stamp(getattr(record, _cursor_field(tab)))},{record.id}"


def parse_cursor(raw: str) -> tuple[datetime | None, int] | None:
    """`<ISO time>,<id>` (the time may be empty: a row without one); None if malformed."""
    stamp, _, pk = (raw or "").rpartition(",")
    if not pk.isdigit():
        return None
    if not stamp:
        return None, int(pk)
    when = parse_stamp(stamp)
    return (when, int(pk)) if when is not None else None


# --- the inbox: the ORM path (the reference) -------------------------------------------------

def reason_q(code: str) -> Q:
    if connection.vendor == "postgresql":
        return Q(reasons__contains=[{"code": code}])
    # SQLite has no JSON containment: match the code's text in the stored JSON.
    return Q(reasons__icontains=f'"code": "{code}"')


def inbox_items(*, user, filters: InboxFilters, now: datetime | None = None) -> QuerySet:
    """The tab's items the user may decide, filtered, in the tab's order (unsliced)."""
    scope = review_scope(user)
    if scope.is_empty:
        return ActionRequest.objects.none()
    items = ActionRequest.objects.filter(scope.q())
    if filters.tab == TAB_SAMPLED:
        items = items.filter(sampled=True, sample_verdict="")
    elif filters.tab == TAB_DECIDED:
        items = items.filter(reviewed_by__isnull=False)
    else:
        items = items.filter(status=ActionRequest.Status.PENDING)
    if filters.agent:
        items = items.filter(agent__slug=filters.agent)
    if filters.system:
        items = items.filter(system__slug=filters.system)
    if filters.reason:
        items = items.filter(reason_q(filters.reason))
    if filters.age in AGES:
        items = items.filter(created_at__lte=(now or timezone.now()) - AGES[filters.age])
    if filters.tab == TAB_DECIDED:
        return items.order_by(F("reviewed_at").desc(nulls_last=True), "-id")
    return items.order_by(F("due_at").asc(nulls_last=True), "id")


class InboxRecord(NamedTuple):
    """What an inbox row shows about one request, as one query returns it."""

    id: int
    public_id: object
    created_at: datetime
    operation: str
    kind: str
    target: str
    summary: str
    amount: Decimal | None
    currency: str
    confidence: float | None
    sources: object  # list of slugs (JSON text on the plain-SQL path)
    reasons: object  # list of {code, message}
    status: str
    due_at: datetime | None
    claimed_by_id: int | None
    route_to_group_id: int | None
    reviewed_at: datetime | None
    review_note: str
    agent_name: str
    agent_level: int
    agent_status: str
    system_name: str
    group_name: str | None
    claimer_name: str | None  # as portal.User.__str__: the full name, else the username
    reviewer_name: str | None


_RECORD_LOOKUPS = (
    "id", "public_id", "created_at", "operation", "kind", "target", "summary", "amount",
    "currency", "confidence", "sources", "reasons", "status", "due_at", "claimed_by_id",
    "route_to_group_id", "reviewed_at", "review_note", "agent__name", "agent__autonomy_level",
    "agent__status", "system__name", "route_to_group__name", "claimed_by__first_name",
    "claimed_by__last_name", "claimed_by__username", "reviewed_by__first_name",
    "reviewed_by__last_name", "reviewed_by__username")


def _orm_record(values: tuple) -> InboxRecord:
    *head, c_first, c_last, c_user, r_first, r_last, r_user = values
    return InboxRecord(*head, _person(c_first, c_last, c_user) if c_user else None,
                       _person(r_first, r_last, r_user) if r_user else None)


def _after_q(tab: str, cursor: tuple[datetime | None, int]) -> Q:
    name = _cursor_field(tab)
    when, pk = cursor
    if tab == TAB_DECIDED:
        if when is None:
            return Q(**{f"{name}__isnull": True, "id__lt": pk})
        return Q(**{f"{name}__lt": when}) | Q(**{name: when, "id__lt": pk})
    if when is None:
        return Q(**{f"{name}__isnull": True, "id__gt": pk})
    return Q(**{f"{name}__gt": when}) | Q(**{name: when, "id__gt": pk})


def _records_orm(*, user, filters, cursor, limit, now) -> list[InboxRecord]:
    items = inbox_items(user=user, filters=filters, now=now)
    if cursor is not None:
        items = items.filter(_after_q(filters.tab, cursor))
    return [_orm_record(values) for values in items.values_list(*_RECORD_LOOKUPS)[:limit]]


# --- the inbox: the plain-SQL path (PostgreSQL) ----------------------------------------------

_A = _table(ActionRequest)
_PERSON_SQL = (f"(SELECT coalesce(nullif(trim(first_name || ' ' || last_name), ''), username) "
               f"FROM {_table(User)} WHERE id = a.{{}})")
# The looked-up names are scalar subqueries, not joins: planning a six-table join took
# PostgreSQL ~3 ms a request, longer than running it; these plan in ~0.1 ms.
_RECORD_SELECT = f"""
SELECT a.id, a.public_id, a.created_at, a.operation, a.kind, a.target, a.summary, a.amount,
       a.currency, a.confidence, a.sources, a.reasons, a.status, a.due_at, a.claimed_by_id,
       a.route_to_group_id, a.reviewed_at, a.review_note,
       (SELECT name FROM {_table(Agent)} WHERE id = a.agent_id),
       (SELECT autonomy_level FROM {_table(Agent)} WHERE id = a.agent_id),
       (SELECT status FROM {_table(Agent)} WHERE id = a.agent_id),
       (SELECT name FROM {_table(System)} WHERE id = a.system_id),
       (SELECT name FROM {_table(Group)} WHERE id = a.route_to_group_id),
       {_PERSON_SQL.format("claimed_by_id")},
       {_PERSON_SQL.format("reviewed_by_id")}
FROM {_A} a
"""
# Each tab's condition, worded as its partial index's predicate so PostgreSQL uses it.
_TAB_SQL = {TAB_WAITING: "a.status = 'pending'",
            TAB_SAMPLED: "a.sampled AND a.sample_verdict = ''",
            TAB_DECIDED: "a.reviewed_by_id IS NOT NULL"}


def _where_sql(scope: ReviewScope, filters: InboxFilters,
               now: datetime) -> tuple[list[str], list]:
    where, params = [_TAB_SQL.get(filters.tab, _TAB_SQL[TAB_WAITING])], []
    if not scope.everything:
        allowed = []
        if scope.all_agents:
            allowed.append("a.route_to_group_id IS NULL")
        elif scope.agent_ids:
            allowed.append("(a.route_to_group_id IS NULL AND a.agent_id = ANY(%s))")
            params.append(list(scope.agent_ids))
        if scope.group_ids:
            allowed.append("a.route_to_group_id = ANY(%s)")
            params.append(list(scope.group_ids))
        where.append("(" + " OR ".join(allowed or ["FALSE"]) + ")")
    if filters.agent:
        where.append(f"a.agent_id = (SELECT id FROM {_table(Agent)} WHERE slug = %s)")
        params.append(filters.agent)
    if filters.system:
        where.append(f"a.system_id = (SELECT id FROM {_table(System)} WHERE slug = %s)")
        params.append(filters.system)
    if filters.reason:
        where.append("a.reasons @> %s::jsonb")
        params.append(json.dumps([{"code": filters.reason}]))
    if filters.age in AGES:
        where.append("a.created_at <= %s")
        params.append(now - AGES[filters.age])
    return where, params


def _records_sql(*, scope, filters, cursor, limit, now) -> list[InboxRecord]:
    where, params = _where_sql(scope, filters, now)
    decided = filters.tab == TAB_DECIDED
    column = "a.reviewed_at" if decided else "a.due_at"
    if cursor is not None:
        when, pk = cursor
        if when is None:
            where.append(f"{column} IS NULL AND a.id {'<' if decided else '>'} %s")
            params.append(pk)
        else:  # a row comparison: PostgreSQL seeks the (due_at, id) index to it
            where.append(f"({column}, a.id) {'<' if decided else '>'} (%s, %s)")
            params += [when, pk]
    order = (f"{column} DESC NULLS LAST, a.id DESC" if decided
             else f"{column} ASC NULLS LAST, a.id ASC")
    sql = f"{_RECORD_SELECT} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s"
    with connection.cursor() as db:
        db.execute(sql, [*params, limit])
        return [InboxRecord(*values) for values in db.fetchall()]


def _records(*, user, filters, cursor, limit, now) -> list[InboxRecord]:
    scope = review_scope(user)
    if scope.is_empty or limit <= 0:
        return []
    if _raw_sql():
        return _records_sql(scope=scope, filters=filters, cursor=cursor, limit=limit, now=now)
    return _records_orm(user=user, filters=filters, cursor=cursor, limit=limit, now=now)


# --- the inbox: a page -----------------------------------------------------------------------

@dataclass
class InboxPage:
    rows: list  # one dict a row, what `reviews/inbox.html#row` shows
    next_after: str  # the cursor of the next page, "" when this is the last
    records: list


def inbox_page(*, user, filters: InboxFilters, after: str = "", now: datetime | None = None,
               row_extra: dict | None = None) -> InboxPage:
    """One page of the inbox (50 rows): the rows, then the data sources they name.

    Rows without a time (due_at, or reviewed_at on Decided) come after all the others; a
    keyset step past the last timed row continues with them.
    """
    now = now or timezone.now()
    cursor = parse_cursor(after) if after else None
    want = PAGE_SIZE + 1
    records = _records(user=user, filters=filters, cursor=cursor, limit=want, now=now)
    if cursor is not None and cursor[0] is not None and len(records) < want:
        # The timed rows ran out: continue with the untimed ones, from the first.
        before_all = (None, 2**63 - 1) if filters.tab == TAB_DECIDED else (None, 0)
        records += _records(user=user, filters=filters, cursor=before_all,
                            limit=want - len(records), now=now)
    more = len(records) > PAGE_SIZE
    records = records[:PAGE_SIZE]
    rows = inbox_rows(records, user=user, tab=filters.tab, now=now, extra=row_extra)
    return InboxPage(rows=rows,
                     next_after=encode_cursor(records[-1], filters.tab) if more else "",
                     records=records)


def inbox_row_for(*, user, action: ActionRequest, tab: str,
                  extra: dict | None = None) -> dict | None:
    """The row of one request (after a decision re-renders it in the inbox)."""
    values = (ActionRequest.objects.filter(pk=action.pk).values_list(*_RECORD_LOOKUPS)
              .first())
    if values is None:
        return None
    return inbox_rows([_orm_record(values)], user=user, tab=tab, extra=extra)[0]


# --- the inbox: what a row shows -------------------------------------------------------------
#
# The Django template engine spends one to two microseconds on each variable it prints, and
# Django's format_html several; the 50-row list must be ready in under 3 ms. So the parts of
# a row that need loops or formatting (the reason and source chips, the what-where line, the
# due time) are composed here once with f-strings, every value from the database passed
# through `esc` (html.escape, quotes too), and the `row` partial only places them.

def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _person(first: str | None, last: str | None, username: str | None) -> str:
    """As `portal.User.__str__`: the full name, else the username."""
    return f"{first or ''} {last or ''}".strip() or (username or "")


@dataclass
class SourceFreshness:
    slug: str
    name: str
    known: bool
    approved: bool
    stale: bool

    @property
    def chip(self) -> str:
        if not self.known:
            return f'<span class="chip warn">{esc(self.name)}: unknown</span>'
        if not self.approved:
            return f'<span class="chip warn">{esc(self.name)}: not approved</span>'
        if self.stale:
            return f'<span class="chip warn">{esc(self.name)}: stale</span>'
        return f'<span class="chip">{esc(self.name)}</span>'


def sources_freshness(slugs, *, now: datetime | None = None) -> dict[str, SourceFreshness]:
    """The approval and freshness of the named data sources, in one query."""
    slugs = {slug for slug in slugs if isinstance(slug, str)}
    if not slugs:
        return {}
    now = now or timezone.now()
    return {source.slug: SourceFreshness(source.slug, source.name, True, source.approved,
                                         source.is_stale(now))
            for source in DataSource.objects.filter(slug__in=slugs).only(
                "slug", "name", "approved", "refreshed_at", "max_age")}


def _source(slug, known: dict) -> SourceFreshness:
    return known.get(slug) or SourceFreshness(str(slug), str(slug), False, False, False)


_UNSTOPPABLE = (Agent.Status.PAUSED, Agent.Status.RETIRED)
_NO_SOURCES = '<span class="muted">no sources</span>'
_NO_CONFIDENCE = '<span class="muted">—</span>'
_OVERDUE = ' <span class="badge warn">overdue</span>'


def _when(value: datetime) -> tuple[str, str]:
    local = timezone.localtime(value)
    return local.isoformat(), f"{local.day} {local:%b %H:%M}"


def inbox_rows(records: list[InboxRecord], *, user, tab: str, now: datetime | None = None,
               extra: dict | None = None) -> list[dict]:
    """A dict a row with everything `reviews/inbox.html#row` prints, escaped, and `extra`
    (the view's CSRF token: one dict lookup a use is the cheapest way to print it)."""
    now = now or timezone.now()
    extra = {"error": "", "open_reject": False, **(extra or {}),
             "waiting": tab == TAB_WAITING, "sampled": tab == TAB_SAMPLED}
    base = reverse("reviews:inbox")
    known = sources_freshness((slug for r in records for slug in (_json(r.sources) or [])),
                              now=now)
    pending = ActionRequest.Status.PENDING
    rows = []
    for r in records:
        key = str(r.public_id)
        why = "".join(f'<span class="chip reason" title="{esc(x.get("message", ""))}">'
                      f'{esc(x.get("code", ""))}</span>'
                      for x in (_json(r.reasons) or []) if isinstance(x, dict))
        if r.group_name:
            why += f'<span class="chip routed">for {esc(r.group_name)}</span>'
        what = f"{esc(r.kind)} <code>{esc(r.operation)}</code> in {esc(r.system_name)}"
        if r.target:
            what += f" · {esc(r.target)}"
        if r.amount is not None:
            what += f" · <strong>{r.amount:.2f} {esc(r.currency)}</strong>"
        sources = _json(r.sources) or []
        overdue = r.due_at is not None and r.due_at < now and r.status == pending
        mine = r.claimed_by_id is not None and r.claimed_by_id == user.pk
        if tab == TAB_DECIDED:
            iso, label = _when(r.reviewed_at) if r.reviewed_at else ("", "")
            note = r.review_note if len(r.review_note) <= 80 else r.review_note[:79] + "…"
            when = (f'<span class="badge status-{esc(r.status)}">{esc(r.status)}</span><div>by '
                    f'{esc(r.reviewer_name or "")} <time datetime="{iso}">{label}</time></div>'
                    + (f'<div class="muted">“{esc(note)}”</div>' if note else ""))
        else:
            if r.due_at is not None:
                iso, label = _when(r.due_at)
                when = f'due <time datetime="{iso}">{label}</time>{_OVERDUE if overdue else ""}'
            else:
                when = '<span class="muted">no due time</span>'
            if r.claimed_by_id is not None:
                claimer = "you" if mine else (r.claimer_name or "")
                when += f"<div>claimed by {esc(claimer)}</div>"
        url = f"{base}{key}/"
        status = esc(r.agent_status)
        confidence = (f"<strong>{r.confidence:.2f}</strong>" if r.confidence is not None
                      else _NO_CONFIDENCE)
        chips = "".join(_source(slug, known).chip for slug in sources) or _NO_SOURCES
        rows.append({
            "key": SafeString(key),  # a UUID
            "url": SafeString(url),
            "row_class": SafeString(" overdue" if overdue else ""),
            "agent_status": SafeString(status),
            "running": r.agent_status not in _UNSTOPPABLE,
            "who": SafeString(
                f'<strong>{esc(r.agent_name)}</strong><div><span class="badge level">'
                f'L{r.agent_level}</span> <span class="badge status-{status}">{status}</span>'
                f'</div>'),
            "what": SafeString(
                f'<a href="{url}" data-key="open">{esc(r.summary or r.operation)}</a>'
                f'<div class="muted small">{what}</div><div class="row-why">{why}</div>'),
            "facts": SafeString(f"<div>confidence {confidence}</div><div>{chips}</div>"),
            "when": SafeString(when),
            "claimed": r.claimed_by_id is not None,
            "claimed_by_me": mine,
            **extra,
        })
    return rows


# --- counts ----------------------------------------------------------------------------------

def _bounded_count(*, user, filters: InboxFilters, limit: int, since: datetime | None = None,
                   now: datetime | None = None) -> int:
    """How many items of the tab (created after `since`), counted up to `limit + 1`."""
    scope = review_scope(user)
    if scope.is_empty:
        return 0
    now = now or timezone.now()
    if not _raw_sql():
        items = inbox_items(user=user, filters=filters, now=now).order_by()
        if since is not None:
            items = items.filter(created_at__gt=since)
        return items.values("id")[: limit + 1].count()
    where, params = _where_sql(scope, filters, now)
    if since is not None:
        where.append("a.created_at > %s")
        params.append(since)
    sql = (f"SELECT count(*) FROM (SELECT 1 FROM {_A} a WHERE {' AND '.join(where)} "
           f"LIMIT %s) AS bounded")
    with connection.cursor() as db:
        db.execute(sql, [*params, limit + 1])
        return db.fetchone()[0]


def new_items_count(*, user, filters: InboxFilters, since: datetime | None,
                    limit: int = PAGE_SIZE) -> int:
    """How many items arrived in the tab after `since`, counted up to `limit + 1` at most.

    By creation time: an item stored just before the page was rendered but committed after
    it is not counted (it shows on the next load); good enough for a hint.
    """
    if filters.tab == TAB_DECIDED or since is None:
        return 0
    return _bounded_count(user=user, filters=filters, limit=limit, since=since)


def waiting_count(*, user, limit: int = BADGE_LIMIT) -> int:
    """Pending items the user may decide, counted up to `limit + 1` (the navigation badge)."""
    return _bounded_count(user=user, filters=InboxFilters(), limit=limit)


def waiting_badge(user) -> str:
    """The navigation's badge text: "" for none, "99+" beyond 99."""
    count = waiting_count(user=user)
    if not count:
        return ""
    return f"{BADGE_LIMIT}+" if count > BADGE_LIMIT else str(count)


def filter_choices(*, user) -> dict:
    """The agents (those the user reviews) and systems the inbox filters offer, one query."""
    scope = review_scope(user)
    agents = Agent.objects.order_by().values_list(Value("a"), "slug", "name")
    if scope.is_empty:
        agents = agents.none()
    elif not scope.all_agents:
        agents = agents.filter(pk__in=scope.agent_ids)
    systems = System.objects.order_by().values_list(Value("s"), "slug", "name")
    found = sorted(agents.union(systems, all=True), key=lambda row: (row[0], row[2], row[1]))
    return {"agents": [(slug, name) for kind, slug, name in found if kind == "a"],
            "systems": [(slug, name) for kind, slug, name in found if kind == "s"]}


# --- one item --------------------------------------------------------------------------------

def _visible_actions(user) -> QuerySet:
    """Requests of agents the user may see or review, or that are routed to their group."""
    if not user.is_authenticated:
        return ActionRequest.objects.none()
    reviewable = get_objects_for_user(user, REVIEW_AGENT, klass=Agent, accept_global_perms=True)
    return ActionRequest.objects.filter(
        Q(agent__in=visible_agents(user).values("pk"))
        | Q(agent__in=reviewable.values("pk"))
        | Q(route_to_group__in=Group.objects.filter(user=user).values("pk")))


def action_for_user(*, user, public_id) -> ActionRequest:
    """The request if the user may see it (its agent, or it waits for them); 404 otherwise."""
    action = (_visible_actions(user)
              .select_related("agent", "agent__paused_by", "system", "route_to_group",
                              "reviewed_by", "claimed_by", "sample_checked_by")
              .filter(public_id=public_id)
              .first())
    if action is None:
        raise Http404("No such action request.")
    return action


def action_context(*, action: ActionRequest) -> dict:
    """Everything the item page shows around the request: its sources' freshness, the
    guardrails that fired, the rollback runbook and the request's audit history."""
    now = timezone.now()
    known = sources_freshness(action.sources or [], now=now)
    action.source_rows = [_source(slug, known) for slug in action.sources or []]
    action.is_overdue = bool(action.due_at and action.due_at < now
                             and action.status == ActionRequest.Status.PENDING)
    guardrail_ids = [pk for pk in (action.fired_guardrail_ids or []) if isinstance(pk, int)]
    guardrails = list(Guardrail.objects.filter(agent_id=action.agent_id, id__in=guardrail_ids)
                      .select_related("system", "route_to_group")) if guardrail_ids else []
    return {
        "change_rows": change_rows(action),
        "fired_guardrails": guardrails,
        "rollback_steps": list(action.agent.rollback_steps.all()),
        "history": action_history(action=action),
    }


def change_rows(action: ActionRequest) -> list[dict]:
    """The proposed field changes and, once approved with edits, what was approved instead."""
    proposed = action.changes if isinstance(action.changes, dict) else {}
    edited = action.edited_changes if isinstance(action.edited_changes, dict) else None
    rows = [{"field": key, "proposed": _readable(value),
             "approved": _readable(edited.get(key, "")) if edited is not None else "",
             "edited": edited is not None and edited.get(key) != value}
            for key, value in proposed.items()]
    for key, value in (edited or {}).items():  # a field the reviewer added
        if key not in proposed:
            rows.append({"field": key, "proposed": "—", "approved": _readable(value),
                         "edited": True})
    return rows


def _readable(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def action_history(*, action: ActionRequest) -> list[AuditEvent]:
    """The request's audit events, oldest first. Every event about a request names its agent,
    so the per-agent audit index finds them (object_type/object_id have no index of their own)."""
    return list(AuditEvent.objects.filter(
        agent_id=action.agent_id, object_type=ActionRequest._meta.label_lower,
        object_id=str(action.pk)).order_by("created_at", "id"))
