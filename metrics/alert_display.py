"""How an alert reads on its page: the evidence as labelled numbers, the links that help check
it, and the button or link that starts the recommended action. Pure: no queries (the view
passes what it loaded)."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.models import Agent
from metrics.models import Alert

Kind = Alert.Kind

# Evidence keys that are better said in words than by their name.
LABELS = {
    "pct": "Share (%)", "n": "Count", "max_age": "Maximum age", "age": "Age",
    "due_at": "Due", "refreshed_at": "Last refreshed", "p50": "Median",
}


@dataclass(frozen=True)
class EvidenceRow:
    label: str
    value: str
    url: str = ""


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class Action:
    """What the alert page offers for `alert.action`: a POST button (`post_url`), a small
    form (`form`: "maintainer"), or a plain link; `note` says why nothing can be offered."""

    label: str
    url: str = ""
    post_url: str = ""
    form: str = ""
    note: str = ""


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " ").strip().capitalize())


def _number(value: float | int | Decimal) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _when(text: str) -> str | None:
    try:
        moment = parse_datetime(text)
    except ValueError:
        return None
    if moment is None:
        return None
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d %H:%M")


def format_value(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str):
        looks_like_a_time = len(value) >= 16 and value[4:5] == "-" and value[10:11] in "T "
        return (_when(value) or value) if looks_like_a_time else value
    if isinstance(value, list | tuple):
        if all(not isinstance(item, dict | list) for item in value):
            return ", ".join(format_value(item) for item in value) or "—"
        return "; ".join(format_value(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{_label(k).lower()} {format_value(v)}" for k, v in value.items())
    return str(value)


def _evidence_link(key: str, value) -> str:
    """Where a piece of evidence can be checked, when its key says what it is."""
    if isinstance(value, str) and value.startswith(("http://", "https://", "/")) and (
            key.endswith("url") or key == "link"):
        return value
    if key in ("incident", "incident_id") and isinstance(value, int):
        return reverse("incidents:detail", args=[value])
    if key in ("action", "action_id", "request", "action_request") and isinstance(value, str):
        try:
            return reverse("reviews:item", args=[uuid.UUID(value)])
        except ValueError:
            return ""
    return ""


FRACTION_KEYS = ("change", "share", "rise", "ratio")  # 0.05 reads better as 5%


def _duration(seconds: float) -> str:
    days, hours = divmod(round(seconds / 3600), 24)
    if days and hours:
        return f"{days} d {hours} h"
    return f"{days} d" if days else f"{hours} h"


def format_field(key: str, value) -> str:
    """A value read with its key: fractions as percentages, seconds as a duration, a series
    of numbers as a trend."""
    is_number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if is_number and key.endswith(FRACTION_KEYS) and abs(value) <= 10:
        return f"{float(value):+.1%}" if key.endswith("change") else f"{float(value):.0%}"
    if is_number and key.endswith("_seconds"):
        return _duration(float(value))
    if isinstance(value, list) and value and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return " → ".join(format_value(v) for v in value)
    if isinstance(value, dict) and value and all(isinstance(k, str) and k[:4].isdigit()
                                                 for k in value):
        return " → ".join(format_value(v) for _k, v in sorted(value.items()))
    return format_value(value)


def _named(item: dict) -> str:
    name = item.get("name") or item.get("username") or item.get("metric") or ""
    return str(name)


def _item_text(item: dict) -> str:
    skip = {"name", "username"} | ({"metric"} if item.get("name") else set())
    return " · ".join(f"{_label(k).lower()} {format_field(k, v)}"
                      for k, v in item.items() if k not in skip and v is not None)


def evidence_rows(evidence, prefix: str = "") -> list[EvidenceRow]:
    """The evidence as rows a person reads: nested figures get their parent's name, a list
    of named figures (metrics, reviewers) one row each."""
    if not isinstance(evidence, dict):
        return [EvidenceRow("Evidence", format_value(evidence))] if evidence else []
    rows = []
    for key, value in evidence.items():
        label = f"{prefix} › {_label(key).lower()}" if prefix else _label(key)
        if isinstance(value, dict) and value.get("name"):  # one named figure
            rows.append(EvidenceRow(f"{label} › {_named(value)}", _item_text(value)))
        elif isinstance(value, dict) and value and not all(
                isinstance(k, str) and k[:4].isdigit() for k in value):
            rows.extend(evidence_rows(value, label))
        elif (isinstance(value, list) and value
              and all(isinstance(item, dict) and _named(item) for item in value)):
            rows.extend(EvidenceRow(f"{label} › {_named(item)}", _item_text(item))
                        for item in value)
        else:
            rows.append(EvidenceRow(label, format_field(key, value),
                                    _evidence_link(key, value)))
    return rows


def _with_query(url: str, **params) -> str:
    params = {k: v for k, v in params.items() if v}
    return f"{url}?{urlencode(params)}" if params else url


def related_links(alert: Alert) -> list[Link]:
    """Pages that show the numbers behind the alert."""
    agent: Agent | None = alert.agent
    links = []
    if agent is not None:
        links += [Link(f"Scorecard of {agent.name}", reverse("metrics:agent", args=[agent.slug])),
                  Link(f"Page of {agent.name}", agent.get_absolute_url())]
        if alert.kind in (Kind.REVIEW_BACKLOG, Kind.OVERRIDE_SPIKE, Kind.BLAST_RADIUS,
                          Kind.RUBBER_STAMPING, Kind.SPEED_QUALITY):
            links.append(Link("Its items in the review inbox",
                              _with_query(reverse("reviews:inbox"), agent=agent.slug)))
        if alert.kind in (Kind.INCIDENTS_UNREVIEWED, Kind.SPEED_QUALITY, Kind.OVERRIDE_SPIKE):
            links.append(Link("Its unresolved incidents", _with_query(
                reverse("incidents:list"), agent=agent.slug, status="unresolved")))
        if alert.kind == Kind.STALE_DATA:
            links.append(Link("Its data sources (on its page)", agent.get_absolute_url()))
    elif alert.kind == Kind.REVIEW_BACKLOG:
        links.append(Link("The review inbox", reverse("reviews:inbox")))
    elif alert.kind == Kind.RUBBER_STAMPING:
        links.append(Link("Decided items in the review inbox",
                          _with_query(reverse("reviews:inbox"), tab="decided")))
    return links


def recommended_action(alert: Alert, *, can_change: bool, is_admin: bool) -> Action | None:
    """The button or link for `alert.action`, as far as this user may start it."""
    agent, action = alert.agent, alert.action
    pk = alert.pk
    if not action or alert.status == Alert.Status.RESOLVED:
        return None
    if action == "lower_autonomy":
        if alert.autonomy_change_id:
            change = alert.autonomy_change
            return Action(f"See the autonomy change (L{change.from_level} → L{change.to_level}, "
                          f"{change.get_status_display()})",
                          url=f"{agent.get_absolute_url()}#autonomy-change-{change.pk}"
                          if agent else "")
        if agent is None:
            return None
        if agent.autonomy_level <= 1:
            return Action("Lower autonomy", note=f"{agent.name} is already at L1: a person "
                          "approves every action.")
        if not can_change:
            return Action("Lower autonomy", note="The agent's owners or an admin can open the "
                          "autonomy change.")
        return Action(f"Request L{agent.autonomy_level - 1} for {agent.name}",
                      post_url=reverse("alerts:lower-autonomy", args=[pk]))
    if action == "assign_maintainer":
        if not is_admin:
            return Action("Assign a maintainer", note="An admin names a source's maintainer.")
        return Action("Assign a maintainer", form="maintainer",
                      post_url=reverse("alerts:maintainer", args=[pk]))
    if agent is not None:
        scorecard = reverse("metrics:agent", args=[agent.slug])
        links = {
            "schedule_review": Action("Record the scorecard review", url=f"{scorecard}#review"),
            "assign_owner": Action("Name the owners", url=reverse("agents:edit",
                                                                  args=[agent.slug]))
            if can_change else Action("Name the owners", note="The agent's owners or an admin "
                                      "can change who owns it."),
            "review_incidents": Action("Review its open incidents", url=_with_query(
                reverse("incidents:list"), agent=agent.slug, status="unresolved")),
            "review_backlog": Action("Work through its waiting items", url=_with_query(
                reverse("reviews:inbox"), agent=agent.slug)),
            "improve_adoption": Action("Read the scorecard's adoption figures", url=scorecard),
            "optimise_cost": Action("Read the scorecard's cost figures", url=scorecard),
            "review_budget": Action("Change the monthly budget", url=reverse(
                "agents:edit", args=[agent.slug])) if can_change else Action(
                "Read the scorecard's cost figures", url=scorecard),
        }
        if action in links:
            return links[action]
    if action == "review_backlog":
        return Action("Open the review inbox", url=reverse("reviews:inbox"))
    if action == "coach_reviewer":
        return Action("See the decided items", url=_with_query(reverse("reviews:inbox"),
                                                               tab="decided"))
    return None
