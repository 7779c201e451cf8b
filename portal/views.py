from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from portal import selectors
from portal.forms import AuditFilterForm

AUDIT_PAGE_SIZE = 50


def dashboard(request):
    return render(request, "portal/dashboard.html",
                  selectors.dashboard_summary(user=request.user))


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
    query = request.GET.copy()
    query.pop("before", None)
    return render(request, "portal/audit_list.html", {
        "form": form,
        "events": rows[:AUDIT_PAGE_SIZE],
        "next_before": rows[AUDIT_PAGE_SIZE - 1].id if len(rows) > AUDIT_PAGE_SIZE else None,
        "query": query.urlencode(),
    })


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
