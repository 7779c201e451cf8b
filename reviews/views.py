"""Review pages: the inbox, one item, and the decisions.

Each decision is a POST that works three ways: from an inbox row with htmx (the row is swapped
out, or re-rendered on a refusal, and a confirmation arrives out of band), from the item page
with htmx (its decision area is re-rendered), and without JavaScript (redirect with a flash
message). A service refusal (ValidationError) changes nothing and is shown as it is worded;
a PermissionDenied answers 403.
"""

from collections.abc import Callable
from urllib.parse import urlsplit

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, QueryDict
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from agents.forms import add_service_errors
from agents.models import Agent
from portal import audit
from reviews import samples, selectors, services
from reviews.forms import (
    AGE_CHOICES,
    REASON_CODES,
    ApproveForm,
    EditApproveForm,
    NoInputForm,
    RejectForm,
    SampleFlagForm,
    inbox_filters,
)
from reviews.models import ActionRequest

INBOX = "reviews/inbox.html"
ITEM = "reviews/item.html"


# --- the inbox -------------------------------------------------------------------------------

def inbox(request):
    filters = inbox_filters(request.GET)
    query = _query_without(request, "after", "since")
    if request.htmx and "since" in request.GET:  # the "new items" indicator polling
        since = request.GET["since"]
        return render(request, f"{INBOX}#new-items", {
            "new_count": selectors.new_items_count(user=request.user, filters=filters,
                                                   since=selectors.parse_stamp(since)),
            "since": since, "query": query, "filters": filters,
            "page_size": selectors.PAGE_SIZE})
    context = {
        "page": selectors.inbox_page(user=request.user, filters=filters,
                                     after=request.GET.get("after", ""),
                                     row_extra={"csrf": SafeString(get_token(request))}),
        "filters": filters, "query": query, "page_size": selectors.PAGE_SIZE,
        "tab_query": _query_without(request, "after", "since", "tab"),
        "since": selectors.format_stamp(timezone.now()),
        "scope_empty": selectors.review_scope(request.user).is_empty,
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, f"{INBOX}#list", context)
    context["choices"] = {**selectors.filter_choices(user=request.user),
                          "reasons": REASON_CODES, "ages": AGE_CHOICES}
    return render(request, INBOX, context)


def _query_without(request, *names) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


# --- one item --------------------------------------------------------------------------------

def item(request, public_id):
    action = selectors.action_for_user(user=request.user, public_id=public_id)
    # The page shows the prompt and the content: who read them is on record (issue 7).
    audit.record_read(request=request, verb="action.viewed", obj=action, agent=action.agent)
    return render(request, ITEM, _item_context(request, action))


def _incident_url(action: ActionRequest) -> str:
    try:
        base = reverse("incidents:create")
    except NoReverseMatch:  # the incident pages arrive in their own change
        base = "/incidents/new/"
    return f"{base}?{urlencode({'agent': action.agent.slug, 'action': action.public_id})}"


def _why_not_approvable(action: ActionRequest) -> str:
    agent = action.agent
    if agent.status == Agent.Status.PAUSED:
        return (f"{agent.name} is paused ({agent.pause_reason}): nothing of it can be approved "
                "until it is resumed. You may still reject it.")
    if agent.status == Agent.Status.RETIRED:
        return f"{agent.name} is retired: its requests can only be rejected."
    return ""


def _decision_context(request, action: ActionRequest, **forms) -> dict:
    """What the decision area needs: who may do what, and the forms (bound ones win)."""
    can_decide = services.can_review(request.user, action)
    pending = action.status == ActionRequest.Status.PENDING
    return {
        "action": action,
        "can_decide": can_decide,
        "pending": pending,
        "why_not_approvable": _why_not_approvable(action) if pending else "",
        "sample_open": action.sampled and not action.sample_verdict,
        "claimed_by_me": action.claimed_by_id == request.user.pk,
        "approve_form": forms.get("approve_form") or ApproveForm(),
        "edit_form": forms.get("edit_form") or EditApproveForm(action=action),
        "reject_form": forms.get("reject_form") or RejectForm(),
        "flag_form": forms.get("flag_form") or SampleFlagForm(),
        "edit_open": "edit" in request.GET or "edit_form" in forms,
        "flag_open": "flag" in request.GET or "flag_form" in forms,
        "incident_url": _incident_url(action),
    }


def _item_context(request, action: ActionRequest, **forms) -> dict:
    context = {**_decision_context(request, action, **forms),
               **selectors.action_context(action=action)}
    # The history tells what happened to the request; who read it is in the audit trail.
    context["history"] = [e for e in context["history"] if e.verb != "action.viewed"]
    return context


# --- decisions -------------------------------------------------------------------------------

def _from_inbox(request, action: ActionRequest) -> bool:
    return bool(request.htmx) and request.htmx.target == f"item-{action.public_id}"


def _back(request, action: ActionRequest) -> str:
    """Back where the form was (the inbox with its filters, or the item page): the Referer
    when it is this site, else the item page."""
    target = request.headers.get("Referer", "")
    if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("reviews:item", args=[action.public_id])


def _form_error(form) -> str:
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        return f"{label}: {errors[0]}" if label and field != "__all__" else errors[0]
    return ""


def _decide(request, public_id, *, form_class, run: Callable, success: str,
            leaves_inbox: bool = True, form_key: str):
    """Check, validate, call the service, answer (see the module docstring).

    `run(action, data)` calls the service with the form's cleaned data (the edit form's
    service arguments); `success` is formatted with `what` (the summary) and `agent`. A
    refusal is shown next to the fields of the form named `form_key` on the item page.
    """
    action = selectors.action_for_user(user=request.user, public_id=public_id)
    if not services.can_review(request.user, action):
        raise PermissionDenied(
            f"Only members of {action.route_to_group.name} may decide this item."
            if action.route_to_group_id else "You are not a reviewer of this agent.")
    form = (form_class(request.POST, action=action) if form_class is EditApproveForm
            else form_class(request.POST))
    error = ""
    if form.is_valid():
        try:
            run(action, form.cleaned_data if form_class is not EditApproveForm
                else form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
            error = " ".join(exc.messages)
    else:
        error = _form_error(form)
    message = error or success.format(what=action.summary or action.operation,
                                      agent=action.agent)
    level = "error" if error else "success"

    if not request.htmx:
        getattr(messages, level)(request, message)
        return redirect(_back(request, action))

    fresh = selectors.action_for_user(user=request.user, public_id=public_id)
    flash = render_to_string(f"{INBOX}#flash", {"flash": message, "flash_level": level},
                             request=request)
    if _from_inbox(request, action):
        if not error and leaves_inbox:
            return HttpResponse(flash)
        # The row again, as the tab it is on shows it (htmx says which page that is).
        page_url = request.headers.get("HX-Current-URL", "")
        filters = inbox_filters(QueryDict(urlsplit(page_url).query))
        row = selectors.inbox_row_for(
            user=request.user, action=fresh, tab=filters.tab,
            extra={"csrf": SafeString(get_token(request)), "error": error,
                   "open_reject": bool(error) and form_key == "reject_form"})
        html = render_to_string(f"{INBOX}#row", {"row": row}, request=request)
        return HttpResponse(html + flash)
    forms = {form_key: form} if error else {}
    context = _item_context(request, fresh, **forms)
    body = (render_to_string(f"{ITEM}#decision", context, request=request)
            + render_to_string(f"{ITEM}#history", {**context, "oob": True}, request=request)
            + flash)
    return HttpResponse(body)


@require_POST
def approve(request, public_id):
    return _decide(request, public_id, form_class=ApproveForm, form_key="approve_form",
                   run=lambda action, data: services.action_approve(
                       actor=request.user, action=action, note=data["note"]),
                   success="Approved: {what} ({agent.name}).")


@require_POST
def edit_approve(request, public_id):
    return _decide(request, public_id, form_class=EditApproveForm, form_key="edit_form",
                   run=lambda action, kwargs: services.action_edit_approve(
                       actor=request.user, action=action, **kwargs),
                   success="Approved with your edits: {what} "
                           "({agent.name}).")


@require_POST
def reject(request, public_id):
    return _decide(request, public_id, form_class=RejectForm, form_key="reject_form",
                   run=lambda action, data: services.action_reject(
                       actor=request.user, action=action, note=data["note"]),
                   success="Rejected: {what} ({agent.name}).")


@require_POST
def claim(request, public_id):
    return _decide(request, public_id, form_class=NoInputForm, form_key="approve_form",
                   leaves_inbox=False,
                   run=lambda action, _data: services.action_claim(
                       actor=request.user, action=action),
                   success="You claimed {what}: others see you are on it.")


@require_POST
def unclaim(request, public_id):
    return _decide(request, public_id, form_class=NoInputForm, form_key="approve_form",
                   leaves_inbox=False,
                   run=lambda action, _data: services.action_unclaim(
                       actor=request.user, action=action),
                   success="Released {what} for other reviewers.")


@require_POST
def looks_right(request, public_id):
    return _decide(request, public_id, form_class=NoInputForm, form_key="approve_form",
                   run=lambda action, _data: samples.sample_looks_right(
                       actor=request.user, action=action),
                   success="Checked: {what} looks right.")


@require_POST
def flag(request, public_id):
    return _decide(request, public_id, form_class=SampleFlagForm, form_key="flag_form",
                   run=lambda action, data: samples.sample_flag(
                       actor=request.user, action=action, **data),
                   success="Flagged: an incident is open on {agent.name} for its owners.")
