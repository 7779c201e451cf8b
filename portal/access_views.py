"""Admin → Access: who may view, review, pause and change which agent.

Admins only: everybody else gets 403 on every page (before any agent is looked up, so a slug
says nothing), anonymous visitors go to the login page. Grant and revoke work with htmx (the
person's or group's row is swapped, with the refusal in it if there is one) and without
JavaScript (redirect with a flash message).
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.forms import add_service_errors
from portal import access
from portal import access_selectors as selectors
from portal.access_forms import AccessChangeForm, AccessSearchForm, BulkGrantForm

PAGE_SIZE = 50
AGENT_PAGE = "portal/access/agent.html"


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def index(request):
    access.require_admin(request.user)
    form = AccessSearchForm(request.GET or None)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    page = Paginator(selectors.access_agents(q=q), PAGE_SIZE).get_page(request.GET.get("page"))
    template = "portal/access/index.html#results" if request.htmx else "portal/access/index.html"
    return render(request, template, {"form": form, "page": page, "q": q,
                                      "query": _query_without_page(request)})


def agent_access(request, slug):
    access.require_admin(request.user)
    agent = selectors.agent_for_access(slug=slug)
    return render(request, AGENT_PAGE, _agent_context(agent, AccessChangeForm()))


def _agent_context(agent, add_form, **extra) -> dict:
    return {"agent": agent, "add_form": add_form, "permission_labels": _labels(),
            **selectors.agent_access_rows(agent=agent), **selectors.holder_choices(), **extra}


def _labels() -> list[str]:
    return [access.PERMISSION_LABELS[c] for c in access.PERMISSIONS]


def _first_error(form) -> str:
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        return f"{label}: {errors[0]}" if label else errors[0]
    return ""


def _change(request, slug, *, service, done: str):
    """Validate, call the grant or revoke service, answer (see the module docstring)."""
    access.require_admin(request.user)
    agent = selectors.agent_for_access(slug=slug)
    form = AccessChangeForm(request.POST)
    error = note = ""
    if form.is_valid():
        kwargs = form.service_kwargs()
        try:
            changed = service(actor=request.user, agent=agent, **kwargs)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            what = access.PERMISSION_LABELS[kwargs["permission"]].lower()
            holder = kwargs["user"].get_username() if kwargs["user"] else kwargs["group"].name
            note = (f"{done.capitalize()} {what} {'to' if done == 'granted' else 'from'} "
                    f"{holder}." if changed else f"Nothing to do: {holder} "
                    f"{'already had' if done == 'granted' else 'did not hold'} {what}.")
    else:
        error = _first_error(form)

    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, note)
        return redirect("access:agent", slug=agent.slug)
    if form.is_valid() and request.htmx.target and request.htmx.target.startswith("access-"):
        row = selectors.holder_row(agent=agent, user=form.cleaned_data["user"],
                                   group=form.cleaned_data["group"], error=error, note=note)
        return render(request, f"{AGENT_PAGE}#holder-row", {"agent": agent, "row": row})
    # The "add a person or group" form: the whole table again, with the form's outcome.
    add_form = form if error else AccessChangeForm()
    response = render(request, f"{AGENT_PAGE}#holders", _agent_context(
        agent, add_form, add_error=error, add_note=note))
    response["HX-Retarget"] = "#holders"
    response["HX-Reswap"] = "outerHTML"
    return response


@require_POST
def grant(request, slug):
    return _change(request, slug, service=access.access_grant, done="granted")


@require_POST
def revoke(request, slug):
    return _change(request, slug, service=access.access_revoke, done="revoked")


def users(request):
    access.require_admin(request.user)
    form = AccessSearchForm(request.GET or None)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    page = Paginator(selectors.access_users(q=q), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "portal/access/users.html", {
        "form": form, "page": page, "q": q, "query": _query_without_page(request)})


def user_access(request, username):
    access.require_admin(request.user)
    return render(request, "portal/access/user.html",
                  {**selectors.user_access(username=username),
                   "permission_labels": _labels()})


def bulk(request):
    access.require_admin(request.user)
    form = BulkGrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            granted = access.access_grant_role(actor=request.user, group=data["group"],
                                               role=data["role"], agents=data["agents"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            names = ", ".join(agent.name for agent in granted) or "none (it had the role "\
                "everywhere already)"
            messages.success(request, f"{data['group'].name} is {data['role']} of "
                             f"{len(data['agents'])} agent(s); newly granted on: {names}.")
            return redirect("access:index")
    checked = set(request.POST.getlist("agents"))
    return render(request, "portal/access/bulk.html", {
        "form": form, "checked": checked, "roles": access.ROLES,
        **selectors.bulk_choices()}, status=400 if form.errors else 200)
