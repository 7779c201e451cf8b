import csv
import json

from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from agents import versions
from portal import audit, selectors
from portal.forms import AuditFilterForm

AUDIT_PAGE_SIZE = 50


def dashboard(request):
    from metrics.alert_selectors import dashboard_alerts, open_alert_count

    return render(request, "portal/dashboard.html", {
        **selectors.dashboard_summary(user=request.user),
        # the navigation badge reuses this count (kept on the user for the request)
        "open_alert_count": open_alert_count(user=request.user),
        "open_alerts": dashboard_alerts(user=request.user),
    })


def audit_list(request):
    """The audit trail for Admins and RevOps, newest first, paged by id (no count(*))."""
    if not request.user.has_perm("portal.view_auditevent"):
        raise PermissionDenied("The audit trail is open to Admins and RevOps.")
    form = AuditFilterForm(request.GET or None, verbs=selectors.audit_verbs())
    filters = selectors.AuditFilters(**form.cleaned_data) if form.is_valid() else (
        selectors.AuditFilters())
    events = selectors.audit_events(filters=filters)
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(id__lt=int(before))
    rows = list(events[: AUDIT_PAGE_SIZE + 1])
    versions.link_audit_events(rows[:AUDIT_PAGE_SIZE])  # "policy vN" links
    query = request.GET.copy()
    query.pop("before", None)
    return render(request, "portal/audit_list.html", {
        "form": form,
        "events": rows[:AUDIT_PAGE_SIZE],
        "next_before": rows[AUDIT_PAGE_SIZE - 1].id if len(rows) > AUDIT_PAGE_SIZE else None,
        "query": query.urlencode(),
    })


def _csv_cell(value) -> str:
    """Keep a spreadsheet from reading a cell as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value):
        return value


def audit_export(request):
    """The audit trail as CSV, with the list's filters; the download is itself audited."""
    if not request.user.has_perm("portal.view_auditevent"):
        raise PermissionDenied("The audit trail is open to Admins and RevOps.")
    form = AuditFilterForm(request.GET or None, verbs=selectors.audit_verbs())
    if request.GET and not form.is_valid():
        problems = "; ".join(f"{name}: {errors[0]}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(f"Fix the filters: {problems}",
                                      content_type="text/plain; charset=utf-8")
    filters = selectors.AuditFilters(**form.cleaned_data) if request.GET else (
        selectors.AuditFilters())
    audit.record_read(request=request, verb="audit.downloaded",
                      data={"filters": {k: v for k, v in vars(filters).items() if v}})
    events = selectors.audit_events(filters=filters)
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(["id", "seq", "created_at", "actor", "verb", "object_type",
                               "object_id", "object", "agent", "data", "hash"])
        for event in events.iterator(chunk_size=2000):
            yield writer.writerow([_csv_cell(v) for v in (
                event.id, event.seq, event.created_at.isoformat(), event.actor_label,
                event.verb, event.object_type, event.object_id, event.object_repr,
                event.agent.slug if event.agent else "",
                json.dumps(event.data, sort_keys=True, ensure_ascii=False), event.hash)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="audit-{timezone.localdate():%Y-%m-%d}.csv"')
    return response


PLACEHOLDERS = {
    "reviews": ("Reviews", "The review inbox arrives with the policy gate: reviewers will "
                "approve, edit or reject what agents propose, oldest due first."),
    "alerts": ("Alerts", "Celery beat will watch for the warning signs (quality falling while "
               "speed rises, cost drift, review backlog, stale data…) and raise alerts here."),
}


def placeholder(request, section):
    title, text = PLACEHOLDERS[section]
    return render(request, "portal/placeholder.html", {"title": title, "text": text,
                                                       "section": section})
