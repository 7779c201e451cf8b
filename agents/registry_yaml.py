"""Agents as code: the registry (systems, data sources, groups, agents) as one YAML file.

    registry = parse(text)            # validate the whole file first; RegistryError lists all
    lines = apply(registry)           # one transaction, through the services, audited
    text = export()                   # the same format, from the database

The file is the truth for every entry it lists: a key left out means its default (no
guardrails, no pausers, L1...), and whatever an entry no longer lists (an access, a guardrail,
a rollback step, a pauser, a reviewer, a group member) is removed. Entries the file does not
list at all are left alone: agents are retired with `status: retired`, never deleted.

Every write goes through the services, so it is permission-checked and audited like a change
made in the portal; a run that finds nothing to change calls no service and writes nothing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents import lifecycle
from agents import services as agent_services
from agents.models import (
    AccessKind,
    Agent,
    DataSource,
    Guardrail,
    RollbackStep,
    System,
)
from portal import services as portal_services
from portal.roles import ROLE_GROUPS

User = get_user_model()
Status = Agent.Status

# --- the format --------------------------------------------------------------------------------

TOP_KEYS = ("systems", "data_sources", "groups", "agents")
SYSTEM_KEYS = ("slug", "name", "description")
SOURCE_KEYS = ("slug", "name", "description", "approved", "maintainer", "max_age",
               "refreshed_at")
GROUP_KEYS = ("name", "members")
AGENT_KEYS = (
    "slug", "name", "description", "business_outcome", "definition_of_done", "workflow",
    "autonomy_level", "status", "paused_from", "pause_reason", "owners", "pausers",
    "reviewers", "review_groups", "review_sample_rate", "confidence", "max_writes_per_hour",
    "monthly_cost_budget", "review_cadence", "access", "sources", "guardrails", "rollback",
)
OWNER_ROLES = ("business", "process", "technical")
CONFIDENCE_KEYS = ("review_below", "block_below")
GUARDRAIL_KEYS = ("name", "system", "operation", "field", "operator", "value", "effect",
                  "route_to_group")
ROLLBACK_KEYS = ("title", "instructions")

# Agent settings that agent_create/agent_update write: key in the file → model field.
AGENT_SETTINGS = {
    "name": "name",
    "description": "description",
    "business_outcome": "business_outcome",
    "definition_of_done": "definition_of_done",
    "workflow": "workflow",
    "autonomy_level": "autonomy_level",
    "owners.business": "business_owner",
    "owners.process": "process_owner",
    "owners.technical": "technical_owner",
    "review_sample_rate": "review_sample_rate",
    "confidence.review_below": "confidence_review_below",
    "confidence.block_below": "confidence_block_below",
    "max_writes_per_hour": "max_writes_per_hour",
    "monthly_cost_budget": "monthly_cost_budget",
    "review_cadence": "review_cadence",
}
AGENT_FIELD_KEYS = {model: key for key, model in AGENT_SETTINGS.items()}
USER_SETTINGS = ("owners.business", "owners.process", "owners.technical")

# Reviewers hold both on the agent; the lifecycle order the YAML status walks along.
REVIEWER_PERMS = ("view_agent", "review_agent")
STATUS_LADDER = (Status.PROPOSED, Status.PILOT, Status.LIVE)
RETIRE_REASON = "Retired by the registry file (status: retired)."


class RegistryError(Exception):
    """The file is wrong or a service refused it; `messages` name the entry and the field."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


@dataclass
class Registry:
    """A validated file, normalised: usernames, slugs and group names, defaults filled in."""

    systems: list[dict] = field(default_factory=list)
    data_sources: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    agents: list[dict] = field(default_factory=list)


# --- durations and timestamps ----------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> timedelta | None:
    """`7d`, `12h`, `30m`, `45s` or a combination such as `1d12h`; None if it is not one."""
    match = _DURATION.fullmatch(text.strip())
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    total, parts = int(value.total_seconds()), []
    for unit, size in _DURATION_UNITS:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- reading YAML ------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """Safe loading that refuses a key given twice in one mapping (a merge slip, not a choice)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", bool: "true/false",
             int: "a number", float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value as a change line shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, str):
        if _PLAIN.fullmatch(value):  # slugs, usernames, statuses read best bare
            return value
        one_line = " ".join(value.split())
        return repr(one_line if len(one_line) <= 60 else one_line[:59] + "…")
    return str(value)


_PLAIN = re.compile(r"[\w.@+-]+")


def _given(value: Any) -> str:
    """A value from the file as an error message quotes it: 'greater', 5, true."""
    return repr(value) if isinstance(value, str) else _show(value)


class _Checker:
    """Collects every problem of the file with its path, e.g. agents[x].owners.business."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._users: dict[str, bool] = {}

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> bool:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping (key: value), got {_kind(value)}")
            return False
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = (f"did you mean '{close[0]}'?" if close
                        else f"use one of {', '.join(allowed)}")
                self.fail(f"{path}.{key}", f"unknown key; {hint}")
        for key in required:
            if value.get(key) in (None, ""):
                self.fail(f"{path}.{key}", "required")
        return True

    def items(self, value: Any, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
            return []
        return value

    def text(self, entry: dict, key: str, path: str, *, max_length: int | None = None) -> str:
        value = entry.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"expected text, got {_kind(value)}")
            return ""
        value = value.strip()
        if max_length and len(value) > max_length:
            self.fail(f"{path}.{key}", f"too long: {len(value)} characters, at most {max_length}")
        return value

    def slug(self, entry: dict, key: str, path: str) -> str:
        value = self.text(entry, key, path, max_length=50)
        if value:
            try:
                validate_slug(value)
            except ValidationError:
                self.fail(f"{path}.{key}", f"'{value}' is not a slug: use lower-case letters, "
                          "digits and hyphens")
        return value

    def number(self, entry: dict, key: str, path: str, default: float | None, *,
               low: float = 0, high: float | None = None) -> float | None:
        value = entry.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{path}.{key}", f"expected a number, got {_kind(value)}")
            return default
        if value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"
            self.fail(f"{path}.{key}", f"{value} is out of range: give a number {allowed}")
            return default
        return value

    def integer(self, entry: dict, key: str, path: str, default: int | None, *, low: int = 0,
                high: int | None = None) -> int | None:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(f"{path}.{key}", f"expected a whole number, got {_kind(value)}")
            return default
        number = self.number(entry, key, path, default, low=low, high=high)
        return None if number is None else int(number)

    def money(self, entry: dict, key: str, path: str) -> Decimal | None:
        value = entry.get(key)
        if value is None:
            return None
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise InvalidOperation
            amount = Decimal(str(value).strip())
            if not amount.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            self.fail(f"{path}.{key}", f"expected an amount such as 500 or 499.99, got "
                      f"{_given(value)}")
            return None
        if amount < 0 or amount >= Decimal(10) ** 10 or amount != amount.quantize(Decimal("0.01")):
            self.fail(f"{path}.{key}", f"{value} is not an amount: at least 0, below "
                      "10,000,000,000, at most two decimal places")
            return None
        return amount.quantize(Decimal("0.01"))

    def boolean(self, entry: dict, key: str, path: str, default: bool) -> bool:
        value = entry.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"expected true or false, got {_given(value)}")
            return default
        return value

    def choice(self, entry: dict, key: str, path: str, choices: list, what: str, default):
        value = entry.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or value not in choices:  # true == 1 must not pass as L1
            self.fail(f"{path}.{key}", f"unknown {what} {_given(value)}; use one of "
                      f"{', '.join(str(c) for c in choices)}")
            return default
        return value

    def duration(self, entry: dict, key: str, path: str) -> timedelta | None:
        value = entry.get(key)
        if value is None:
            return None
        parsed = parse_duration(value) if isinstance(value, str) else None
        if parsed is None:
            self.fail(f"{path}.{key}", f"bad duration {_given(value)}; write it like 7d, 12h "
                      "or 30m (days, hours, minutes, seconds; e.g. 1d12h)")
        return parsed

    def timestamp(self, entry: dict, key: str, path: str) -> datetime | None:
        value = entry.get(key)
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail(f"{path}.{key}", f"bad timestamp {_given(str(value))}; give an ISO-8601 "
                      'date and time with its time zone, e.g. "2026-11-20T08:00:00Z"')
            return None
        return parsed

    def names(self, entry: dict, key: str, path: str) -> list[str]:
        """A list of names (usernames, slugs, group names), deduplicated and sorted."""
        names = []
        for index, item in enumerate(self.items(entry.get(key), f"{path}.{key}")):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{path}.{key}[{index}]", f"expected a name, got {_kind(item)}")
            else:
                names.append(item.strip())
        return sorted(set(names))

    def user(self, name: str | None, path: str) -> None:
        if name is None:
            return
        if name not in self._users:
            self._users[name] = User.objects.filter(username=name).exists()
        if not self._users[name]:
            self.fail(path, f"unknown user '{name}'")


def _entry_path(section: str, entry: Any, key: str, index: int) -> str:
    name = entry.get(key) if isinstance(entry, dict) else None
    return f"{section}[{name.strip()}]" if isinstance(name, str) and name.strip() else (
        f"{section}[{index}]")


def _max_length(model, name: str) -> int:
    return model._meta.get_field(name).max_length


def parse(text: str) -> Registry:
    """Read and validate the whole file; RegistryError lists every problem found."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RegistryError([f"not valid YAML: {exc}"]) from None
    check = _Checker()
    if data is None:
        data = {}
    if not check.mapping(data, "(file)", TOP_KEYS):
        raise RegistryError(check.errors)
    registry = Registry()
    registry.systems = _parse_systems(check, data.get("systems"))
    registry.data_sources = _parse_sources(check, data.get("data_sources"))
    registry.groups = _parse_groups(check, data.get("groups"))
    known = {
        "system": {s["slug"] for s in registry.systems}
        | set(System.objects.values_list("slug", flat=True)),
        "source": {s["slug"] for s in registry.data_sources}
        | set(DataSource.objects.values_list("slug", flat=True)),
        "group": {g["name"] for g in registry.groups}
        | set(Group.objects.values_list("name", flat=True)),
    }
    registry.agents = _parse_agents(check, data.get("agents"), known)
    if check.errors:
        raise RegistryError(check.errors)
    return registry


def load_file(path: str | Path) -> Registry:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError([f"{path}: {exc.strerror or exc}"]) from None
    return parse(text)


def _unique(check: _Checker, seen: set, name: str, path: str) -> bool:
    if name in seen:
        check.fail(path, "listed twice")
        return False
    seen.add(name)
    return True


def _parse_systems(check: _Checker, value: Any) -> list[dict]:
    systems, seen = [], set()
    for index, entry in enumerate(check.items(value, "systems")):
        path = _entry_path("systems", entry, "slug", index)
        if not check.mapping(entry, path, SYSTEM_KEYS, required=("slug", "name")):
            continue
        spec = {
            "slug": check.slug(entry, "slug", path),
            "name": check.text(entry, "name", path, max_length=_max_length(System, "name")),
            "description": check.text(entry, "description", path),
        }
        if spec["slug"] and _unique(check, seen, spec["slug"], path):
            systems.append(spec)
    return systems


def _parse_sources(check: _Checker, value: Any) -> list[dict]:
    sources, seen = [], set()
    for index, entry in enumerate(check.items(value, "data_sources")):
        path = _entry_path("data_sources", entry, "slug", index)
        if not check.mapping(entry, path, SOURCE_KEYS, required=("slug", "name")):
            continue
        maintainer = check.text(entry, "maintainer", path) or None
        check.user(maintainer, f"{path}.maintainer")
        spec = {
            "slug": check.slug(entry, "slug", path),
            "name": check.text(entry, "name", path, max_length=_max_length(DataSource, "name")),
            "description": check.text(entry, "description", path),
            "approved": check.boolean(entry, "approved", path, False),
            "maintainer": maintainer,
            "max_age": check.duration(entry, "max_age", path),
            "refreshed_at": check.timestamp(entry, "refreshed_at", path),
        }
        if spec["slug"] and _unique(check, seen, spec["slug"], path):
            sources.append(spec)
    return sources


def _parse_groups(check: _Checker, value: Any) -> list[dict]:
    groups, seen = [], set()
    for index, entry in enumerate(check.items(value, "groups")):
        path = _entry_path("groups", entry, "name", index)
        if not check.mapping(entry, path, GROUP_KEYS, required=("name",)):
            continue
        spec = {"name": check.text(entry, "name", path, max_length=_max_length(Group, "name")),
                "members": check.names(entry, "members", path)}
        for member in spec["members"]:
            check.user(member, f"{path}.members")
        if spec["name"] and _unique(check, seen, spec["name"], path):
            groups.append(spec)
    return groups


def _parse_agents(check: _Checker, value: Any, known: dict[str, set]) -> list[dict]:
    agents, seen = [], set()
    entries = check.items(value, "agents")
    slugs = [e.get("slug") for e in entries if isinstance(e, dict)]
    retired = set(Agent.objects.filter(slug__in=[s for s in slugs if isinstance(s, str)],
                                       status=Status.RETIRED).values_list("slug", flat=True))
    for index, entry in enumerate(entries):
        path = _entry_path("agents", entry, "slug", index)
        errors_before = len(check.errors)
        if not check.mapping(entry, path, AGENT_KEYS, required=("slug", "name")):
            continue
        spec = _parse_agent(check, entry, path, known)
        if spec["slug"] in retired and spec["status"] != Status.RETIRED:
            check.fail(f"{path}.status", "the agent is retired, and retired is final")
        if len(check.errors) == errors_before:  # only a well-formed entry can be judged whole
            _check_lifecycle(check, spec, path)
        if spec["slug"] and _unique(check, seen, spec["slug"], path):
            agents.append(spec)
    return agents


def _parse_agent(check: _Checker, entry: dict, path: str, known: dict[str, set]) -> dict:
    def length(name: str) -> int:
        return _max_length(Agent, name)

    spec: dict[str, Any] = {
        "slug": check.slug(entry, "slug", path),
        "name": check.text(entry, "name", path, max_length=length("name")),
        "description": check.text(entry, "description", path),
        "business_outcome": check.text(entry, "business_outcome", path,
                                       max_length=length("business_outcome")),
        "definition_of_done": check.text(entry, "definition_of_done", path),
        "workflow": check.text(entry, "workflow", path, max_length=length("workflow")),
        "autonomy_level": check.choice(entry, "autonomy_level", path, Agent.Autonomy.values,
                                       "autonomy level", Agent.Autonomy.L1),
        "status": check.choice(entry, "status", path, Status.values, "status",
                               Status.PROPOSED),
        "review_sample_rate": float(check.number(entry, "review_sample_rate", path, 0.1,
                                                 high=1)),
        "max_writes_per_hour": check.integer(entry, "max_writes_per_hour", path, None),
        "monthly_cost_budget": check.money(entry, "monthly_cost_budget", path),
        "review_cadence": check.choice(entry, "review_cadence", path, Agent.Cadence.values,
                                       "review cadence", Agent.Cadence.WEEKLY),
    }
    paused = spec["status"] == Status.PAUSED
    spec["paused_from"] = check.choice(entry, "paused_from", path, list(STATUS_LADDER),
                                       "status to pause from", None)
    spec["pause_reason"] = check.text(entry, "pause_reason", path)
    if paused and not spec["pause_reason"]:
        check.fail(f"{path}.pause_reason", "required when status is paused: say why")
    for key in ("paused_from", "pause_reason"):
        if not paused and entry.get(key) not in (None, ""):
            check.fail(f"{path}.{key}", "only used when status is paused")

    owners = entry.get("owners")
    spec["owners"] = dict.fromkeys(OWNER_ROLES)
    if owners is not None and check.mapping(owners, f"{path}.owners", OWNER_ROLES):
        for role in OWNER_ROLES:
            name = check.text(owners, role, f"{path}.owners") or None
            check.user(name, f"{path}.owners.{role}")
            spec["owners"][role] = name
    for key in ("pausers", "reviewers"):
        spec[key] = check.names(entry, key, path)
        for name in spec[key]:
            check.user(name, f"{path}.{key}")
    spec["review_groups"] = check.names(entry, "review_groups", path)
    for name in spec["review_groups"]:
        if name not in known["group"]:
            check.fail(f"{path}.review_groups", f"unknown group '{name}'")
    spec["sources"] = check.names(entry, "sources", path)
    for slug in spec["sources"]:
        if slug not in known["source"]:
            check.fail(f"{path}.sources", f"unknown data source '{slug}'")

    confidence = entry.get("confidence")
    spec["confidence"] = {"review_below": 0.7, "block_below": 0.3}
    if confidence is not None and check.mapping(confidence, f"{path}.confidence",
                                                CONFIDENCE_KEYS):
        for key in CONFIDENCE_KEYS:
            spec["confidence"][key] = float(check.number(
                confidence, key, f"{path}.confidence", spec["confidence"][key], high=1))
        if spec["confidence"]["block_below"] > spec["confidence"]["review_below"]:
            check.fail(f"{path}.confidence.block_below",
                       f"{spec['confidence']['block_below']} is above review_below "
                       f"({spec['confidence']['review_below']}); blocking must start lower")

    spec["access"] = {}
    access = entry.get("access")
    if access is not None and not isinstance(access, dict):
        check.fail(f"{path}.access", f"expected a mapping of system: kind, got {_kind(access)}")
    elif access:
        for system, kind in access.items():
            where = f"{path}.access.{system}"
            if system not in known["system"]:
                check.fail(where, f"unknown system '{system}'")
            elif kind not in AccessKind.values:
                check.fail(where, f"unknown access kind {_given(kind)}; use one of "
                           f"{', '.join(AccessKind.values)}")
            else:
                spec["access"][system] = kind
        spec["access"] = dict(sorted(spec["access"].items()))

    spec["guardrails"], names = [], set()
    for index, item in enumerate(check.items(entry.get("guardrails"), f"{path}.guardrails")):
        guardrail = _parse_guardrail(check, item, f"{path}.guardrails[{index}]", known)
        if guardrail and _unique(check, names, guardrail["name"],
                                 f"{path}.guardrails[{index}].name"):
            spec["guardrails"].append(guardrail)

    spec["rollback"] = []
    for index, item in enumerate(check.items(entry.get("rollback"), f"{path}.rollback")):
        where = f"{path}.rollback[{index}]"
        if check.mapping(item, where, ROLLBACK_KEYS, required=ROLLBACK_KEYS):
            spec["rollback"].append({
                "title": check.text(item, "title", where,
                                    max_length=_max_length(RollbackStep, "title")),
                "instructions": check.text(item, "instructions", where),
            })
    return spec


def _parse_guardrail(check: _Checker, item: Any, path: str, known: dict[str, set]) -> dict | None:
    if not check.mapping(item, path, GUARDRAIL_KEYS, required=("name", "field", "operator")):
        return None
    errors_before = len(check.errors)
    spec = {
        "name": check.text(item, "name", path, max_length=_max_length(Guardrail, "name")),
        "system": check.text(item, "system", path) or None,
        "operation": check.text(item, "operation", path,
                                max_length=_max_length(Guardrail, "operation")),
        "field": check.text(item, "field", path, max_length=_max_length(Guardrail, "field")),
        "operator": check.choice(item, "operator", path, Guardrail.Operator.values,
                                 "operator", None),
        "value": item.get("value"),
        "effect": check.choice(item, "effect", path, Guardrail.Effect.values, "effect",
                               Guardrail.Effect.REVIEW),
        "route_to_group": check.text(item, "route_to_group", path) or None,
    }
    if spec["system"] and spec["system"] not in known["system"]:
        check.fail(f"{path}.system", f"unknown system '{spec['system']}'")
    if spec["route_to_group"]:
        if spec["route_to_group"] not in known["group"]:
            check.fail(f"{path}.route_to_group", f"unknown group '{spec['route_to_group']}'")
        elif spec["effect"] != Guardrail.Effect.REVIEW:
            check.fail(f"{path}.route_to_group", "only a review can be routed to a group; "
                       "use effect: review or drop route_to_group")
    if len(check.errors) > errors_before or not spec["operator"]:
        return None
    # The model's own check, which also normalises the value ("500" → 500, "a, b" → [a, b]).
    probe = Guardrail(field=spec["field"], operator=spec["operator"], value=spec["value"],
                      effect=spec["effect"])
    try:
        probe.clean()
    except ValidationError as exc:
        for key, messages in exc.message_dict.items():
            if key != "route_to_group":
                for message in messages:
                    check.fail(path if key == NON_FIELD_ERRORS else f"{path}.{key}", message)
        return None
    spec["value"] = probe.value
    return spec


def _check_lifecycle(check: _Checker, spec: dict, path: str) -> None:
    """Pilot and live (also as the status before a pause) need what the lifecycle demands."""
    key, target = "status", spec["status"]
    if target == Status.PAUSED:
        key, target = "paused_from", spec["paused_from"]
    if target not in (Status.PILOT, Status.LIVE):
        return
    probe = Agent(business_outcome=spec["business_outcome"],
                  definition_of_done=spec["definition_of_done"])
    # Placeholder users stand for the named owners: only "is someone named" matters here.
    probe.business_owner, probe.process_owner, probe.technical_owner = (
        User(username=spec["owners"][role]) if spec["owners"][role] else None
        for role in OWNER_ROLES)
    gaps = lifecycle.missing_for(probe, target, accesses=len(spec["access"]),
                                 steps=len(spec["rollback"]), guardrails=len(spec["guardrails"]))
    if gaps:
        check.fail(f"{path}.{key}", f"cannot be {target}: it needs "
                   f"{lifecycle.describe_gaps(gaps)}")


# --- the state in the database, in the same shape ----------------------------------------------

def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def system_state(system: System) -> dict:
    return {"slug": system.slug, "name": system.name, "description": system.description}


def source_state(source: DataSource) -> dict:
    return {"slug": source.slug, "name": source.name, "description": source.description,
            "approved": source.approved, "maintainer": _username(source.maintainer),
            "max_age": source.max_age, "refreshed_at": source.refreshed_at}


def group_state(group: Group) -> dict:
    return {"name": group.name,
            "members": sorted(u.get_username() for u in group.user_set.all())}


def guardrail_state(guardrail: Guardrail) -> dict:
    return {
        "name": guardrail.name,
        "system": guardrail.system.slug if guardrail.system_id else None,
        "operation": guardrail.operation,
        "field": guardrail.field,
        "operator": guardrail.operator,
        "value": guardrail.value,
        "effect": guardrail.effect,
        "route_to_group": guardrail.route_to_group.name if guardrail.route_to_group_id else None,
    }


def _perm_holders(agents: list[Agent], codename: str) -> tuple[dict, dict]:
    """{agent pk: sorted usernames} and {agent pk: sorted group names} holding `codename`."""
    ct = ContentType.objects.get_for_model(Agent)
    pks = [str(a.pk) for a in agents]
    users: dict[int, list[str]] = {}
    groups: dict[int, list[str]] = {}
    for pk, name in (UserObjectPermission.objects
                     .filter(content_type=ct, object_pk__in=pks, permission__codename=codename)
                     .values_list("object_pk", "user__username")):
        users.setdefault(int(pk), []).append(name)
    for pk, name in (GroupObjectPermission.objects
                     .filter(content_type=ct, object_pk__in=pks, permission__codename=codename)
                     .values_list("object_pk", "group__name")):
        groups.setdefault(int(pk), []).append(name)
    return ({pk: sorted(set(v)) for pk, v in users.items()},
            {pk: sorted(set(v)) for pk, v in groups.items()})


def agent_state(agent: Agent, *, reviewers: list[str], review_groups: list[str]) -> dict:
    paused = agent.status == Status.PAUSED
    return {
        "slug": agent.slug,
        "name": agent.name,
        "description": agent.description,
        "business_outcome": agent.business_outcome,
        "definition_of_done": agent.definition_of_done,
        "workflow": agent.workflow,
        "autonomy_level": agent.autonomy_level,
        "status": agent.status,
        "paused_from": (agent.status_before_pause or Status.PROPOSED) if paused else None,
        "pause_reason": agent.pause_reason if paused else "",
        "owners": {role: _username(user) for role, user in agent.owners.items()},
        "pausers": sorted(u.get_username() for u in agent.pausers.all()),
        "reviewers": reviewers,
        "review_groups": review_groups,
        "review_sample_rate": agent.review_sample_rate,
        "confidence": {"review_below": agent.confidence_review_below,
                       "block_below": agent.confidence_block_below},
        "max_writes_per_hour": agent.max_writes_per_hour,
        "monthly_cost_budget": agent.monthly_cost_budget,
        "review_cadence": agent.review_cadence,
        "access": dict(sorted((a.system.slug, a.max_kind) for a in agent.accesses.all())),
        "sources": sorted(s.slug for s in agent.sources.all()),
        "guardrails": [guardrail_state(g) for g in agent.guardrails.all()],
        "rollback": [{"title": s.title, "instructions": s.instructions}
                     for s in agent.rollback_steps.all()],
    }


def _agents_queryset():
    return Agent.objects.select_related(
        "business_owner", "process_owner", "technical_owner",
    ).prefetch_related(
        "pausers", "sources", "accesses__system", "guardrails__system",
        "guardrails__route_to_group", "rollback_steps",
    )


def _load_agent(slug: str) -> tuple[Agent | None, dict | None]:
    agent = _agents_queryset().filter(slug=slug).first()
    if agent is None:
        return None, None
    users, groups = _perm_holders([agent], "review_agent")
    return agent, agent_state(agent, reviewers=users.get(agent.pk, []),
                              review_groups=groups.get(agent.pk, []))


def _flat_settings(spec: dict) -> dict:
    """The agent settings agent_create/agent_update write, keyed as in the file."""
    flat = {}
    for key in AGENT_SETTINGS:
        head, _, tail = key.partition(".")
        flat[key] = spec[head][tail] if tail else spec[head]
    flat["pausers"], flat["sources"] = spec["pausers"], spec["sources"]
    return flat


# --- applying --------------------------------------------------------------------------------

def apply(registry: Registry, *, actor=None, dry_run: bool = False) -> list[str]:
    """Bring the database to what the file says, in one transaction; return the change lines.

    A dry run makes the very same changes and rolls them back, so what it prints is exactly
    what a real run would do, and nothing (rows, audit events, permissions) stays behind.
    """
    applier = _Applier(actor)
    with transaction.atomic():
        applier.run(registry)
        if dry_run:
            transaction.set_rollback(True)
    return applier.lines


class _Applier:
    def __init__(self, actor) -> None:
        self.actor = actor
        self.lines: list[str] = []
        self._users: dict[str, Any] = {}

    def user(self, name: str | None):
        if name is None:
            return None
        if name not in self._users:
            self._users[name] = User.objects.get(username=name)
        return self._users[name]

    @contextmanager
    def at(self, path: str, keys: dict[str, str] | None = None) -> Iterator[None]:
        """Turn a service's refusal into a message that names the entry (and the field)."""
        try:
            yield
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise RegistryError([f"{path}: {m}" for m in exc.messages]) from exc
            messages = []
            for name, errors in exc.message_dict.items():
                key = (keys or {}).get(name, name)
                where = path if name == NON_FIELD_ERRORS else f"{path}.{key}"
                messages += [f"{where}: {m}" for m in errors]
            raise RegistryError(messages) from exc
        except PermissionDenied as exc:
            raise RegistryError([f"{path}: permission denied: {exc}"]) from exc
        except IntegrityError as exc:
            raise RegistryError([f"{path}: the database refused the change: {exc}"]) from exc

    def changed(self, what: str, name: str, before: dict | None, after: dict,
                keys) -> list[str]:
        """Write the change lines for one entry; return the keys whose value changes."""
        if before is None:
            self.lines.append(f"+ {what} {name}")
            return list(keys)
        keys = [key for key in keys if before[key] != after[key]]
        for key in keys:
            self.lines.append(f"~ {what} {name}: {key} {_show(before[key])} → "
                              f"{_show(after[key])}")
        return keys

    def run(self, registry: Registry) -> None:
        for spec in registry.systems:
            self.system(spec)
        for spec in registry.data_sources:
            self.source(spec)
        for spec in registry.groups:
            self.group(spec)
        for spec in registry.agents:
            self.agent(spec)

    # systems, sources, groups: one service call each, only when something differs

    def system(self, spec: dict) -> None:
        current = System.objects.filter(slug=spec["slug"]).first()
        before = system_state(current) if current else None
        if self.changed("system", spec["slug"], before, spec, ("name", "description")):
            with self.at(f"systems[{spec['slug']}]"):
                agent_services.system_save(actor=self.actor, slug=spec["slug"],
                                           name=spec["name"], description=spec["description"])

    def source(self, spec: dict) -> None:
        current = DataSource.objects.select_related("maintainer").filter(
            slug=spec["slug"]).first()
        before = source_state(current) if current else None
        keys = ("name", "description", "approved", "maintainer", "max_age", "refreshed_at")
        if self.changed("data_source", spec["slug"], before, spec, keys):
            fields = {key: spec[key] for key in keys}
            fields["maintainer"] = self.user(spec["maintainer"])
            with self.at(f"data_sources[{spec['slug']}]"):
                agent_services.data_source_save(actor=self.actor, slug=spec["slug"], **fields)

    def group(self, spec: dict) -> None:
        current = Group.objects.filter(name=spec["name"]).first()
        before = group_state(current) if current else None
        if self.changed("group", spec["name"], before, spec, ("members",)):
            with self.at(f"groups[{spec['name']}]"):
                portal_services.group_save(actor=self.actor, name=spec["name"],
                                           members=[self.user(n) for n in spec["members"]])

    # agents

    def agent(self, spec: dict) -> None:
        slug, path = spec["slug"], f"agents[{spec['slug']}]"
        agent, before = _load_agent(slug)
        paused_from = spec["paused_from"]
        if spec["status"] == Status.PAUSED and paused_from is None:
            # Not said: a paused agent stays paused from where it was, any other is paused
            # where it stands (a new one in proposed).
            paused_from = (before["paused_from"] if before and before["paused_from"]
                           else agent.status if agent and agent.status in STATUS_LADDER
                           else Status.PROPOSED)
        # Going down the lifecycle happens before the configuration shrinks (a live agent
        # steps back through pilot while it still has what pilot needs); going up, after.
        status_first = (agent is not None and spec["status"] != Status.RETIRED
                        and _rank(spec["status"], paused_from)
                        < _rank(agent.status, agent.status_before_pause))
        if agent is None:
            self.lines.append(f"+ agent {slug}")
            with self.at(path, AGENT_FIELD_KEYS):
                agent = agent_services.agent_create(
                    actor=self.actor, slug=slug, pausers=[self.user(n) for n in spec["pausers"]],
                    sources=list(DataSource.objects.filter(slug__in=spec["sources"])),
                    **self.agent_fields(spec, AGENT_SETTINGS))
            before = {"status": Status.PROPOSED, "paused_from": None, "pause_reason": ""}
        else:
            if status_first:
                agent = self.status(agent, spec, before, path, paused_from)
            old, new = _flat_settings(before), _flat_settings(spec)
            keys = self.changed("agent", slug, old, new, list(new))
            if keys:
                extra = {}
                if "pausers" in keys:
                    extra["pausers"] = [self.user(n) for n in spec["pausers"]]
                if "sources" in keys:
                    extra["sources"] = list(DataSource.objects.filter(slug__in=spec["sources"]))
                with self.at(path, AGENT_FIELD_KEYS):
                    agent = agent_services.agent_update(
                        actor=self.actor, agent=agent, **extra,
                        **self.agent_fields(spec, [k for k in keys if k in AGENT_SETTINGS]))
        self.accesses(agent, spec, path)
        self.guardrails(agent, spec, path)
        self.rollback(agent, spec, path)
        self.reviewers(agent, spec, path)
        if not status_first:
            self.status(agent, spec, before, path, paused_from)

    def agent_fields(self, spec: dict, keys) -> dict:
        flat = _flat_settings(spec)
        return {AGENT_SETTINGS[key]: self.user(flat[key]) if key in USER_SETTINGS else flat[key]
                for key in keys}

    def accesses(self, agent: Agent, spec: dict, path: str) -> None:
        current = {a.system.slug: a for a in agent.accesses.select_related("system")}
        for slug, access in current.items():
            if slug not in spec["access"]:
                self.lines.append(f"- access {agent.slug}/{slug}")
                with self.at(f"{path}.access"):
                    agent_services.system_access_remove(actor=self.actor, access=access)
        for slug, kind in spec["access"].items():
            if slug not in current:
                self.lines.append(f"+ access {agent.slug}/{slug}: {kind}")
            elif current[slug].max_kind != kind:
                self.lines.append(f"~ access {agent.slug}/{slug}: {current[slug].max_kind} → "
                                  f"{kind}")
            else:
                continue
            with self.at(f"{path}.access.{slug}"):
                agent_services.system_access_set(actor=self.actor, agent=agent,
                                                 system=System.objects.get(slug=slug),
                                                 max_kind=kind)

    def guardrails(self, agent: Agent, spec: dict, path: str) -> None:
        current = {g.name: g for g in agent.guardrails.select_related("system", "route_to_group")}
        wanted = {g["name"] for g in spec["guardrails"]}
        for name, guardrail in current.items():
            if name not in wanted:
                self.lines.append(f"- guardrail {agent.slug}/{name}")
                with self.at(f"{path}.guardrails"):
                    agent_services.guardrail_delete(actor=self.actor, guardrail=guardrail)
        for index, want in enumerate(spec["guardrails"]):
            guardrail = current.get(want["name"])
            before = guardrail_state(guardrail) if guardrail else None
            keys = self.changed("guardrail", f"{agent.slug}/{want['name']}", before, want,
                                [k for k in GUARDRAIL_KEYS if k != "name"])
            if not keys:
                continue
            fields = {key: want[key] for key in keys}
            if "system" in fields:
                fields["system"] = System.objects.filter(slug=want["system"]).first()
            if "route_to_group" in fields:
                fields["route_to_group"] = Group.objects.filter(
                    name=want["route_to_group"]).first()
            with self.at(f"{path}.guardrails[{index}]"):
                if guardrail is None:
                    agent_services.guardrail_create(actor=self.actor, agent=agent,
                                                    name=want["name"], **fields)
                else:
                    agent_services.guardrail_update(actor=self.actor, guardrail=guardrail,
                                                    **fields)

    def rollback(self, agent: Agent, spec: dict, path: str) -> None:
        steps = list(agent.rollback_steps.order_by("position"))
        for index, want in enumerate(spec["rollback"]):
            where = f"{path}.rollback[{index}]"
            if index >= len(steps):
                self.lines.append(f"+ rollback {agent.slug}/{index + 1}: {want['title']}")
                with self.at(where):
                    agent_services.rollback_step_add(actor=self.actor, agent=agent, **want)
                continue
            before = {"title": steps[index].title, "instructions": steps[index].instructions}
            if self.changed("rollback", f"{agent.slug}/{index + 1}", before, want,
                            ROLLBACK_KEYS):
                with self.at(where):
                    agent_services.rollback_step_update(actor=self.actor, step=steps[index],
                                                        **want)
        for step in reversed(steps[len(spec["rollback"]):]):  # from the end: no renumbering
            self.lines.append(f"- rollback {agent.slug}/{step.position}: {step.title}")
            with self.at(f"{path}.rollback"):
                agent_services.rollback_step_remove(actor=self.actor, step=step)

    def reviewers(self, agent: Agent, spec: dict, path: str) -> None:
        """Listed reviewers (users or groups) hold view_agent and review_agent; others lose them."""
        agent = Agent.objects.prefetch_related("pausers").get(pk=agent.pk)
        users, groups = _perm_holders([agent], "review_agent")
        # Owners and pausers keep view_agent: being named on the agent gives it to them.
        named = {u.get_username() for u in agent.owners.values() if u} | {
            u.get_username() for u in agent.pausers.all()}
        for name in spec["reviewers"]:
            user = self.user(name)
            held = portal_services.agent_direct_perms(agent, user=user)
            if not set(REVIEWER_PERMS) <= held:
                self.lines.append(f"+ reviewer {agent.slug}/{name}")
                with self.at(f"{path}.reviewers"):
                    portal_services.agent_permission_grant(actor=self.actor, agent=agent,
                                                           perm=REVIEWER_PERMS, user=user)
        for name in users.get(agent.pk, []):
            if name not in spec["reviewers"]:
                self.lines.append(f"- reviewer {agent.slug}/{name}")
                perms = ["review_agent"] if name in named else list(REVIEWER_PERMS)
                with self.at(f"{path}.reviewers"):
                    portal_services.agent_permission_revoke(actor=self.actor, agent=agent,
                                                            perm=perms, user=self.user(name))
        for name in spec["review_groups"]:
            group = Group.objects.get(name=name)
            held = portal_services.agent_direct_perms(agent, group=group)
            if not set(REVIEWER_PERMS) <= held:
                self.lines.append(f"+ review_group {agent.slug}/{name}")
                with self.at(f"{path}.review_groups"):
                    portal_services.agent_permission_grant(actor=self.actor, agent=agent,
                                                           perm=REVIEWER_PERMS, group=group)
        for name in groups.get(agent.pk, []):
            if name not in spec["review_groups"]:
                self.lines.append(f"- review_group {agent.slug}/{name}")
                with self.at(f"{path}.review_groups"):
                    portal_services.agent_permission_revoke(
                        actor=self.actor, agent=agent, perm=REVIEWER_PERMS,
                        group=Group.objects.get(name=name))

    def status(self, agent: Agent, spec: dict, before: dict, path: str,
               paused_from: str | None) -> Agent:
        """Reach the file's status through the lifecycle services, one legal move at a time."""
        agent = Agent.objects.get(pk=agent.pk)
        target, reason = spec["status"], spec["pause_reason"]
        after = {"status": target, "paused_from": paused_from,
                 "pause_reason": reason if target == Status.PAUSED else ""}
        if target == Status.RETIRED:
            after["paused_from"], after["pause_reason"] = before["paused_from"], before[
                "pause_reason"]
        if not self.changed("agent", agent.slug, before, after, list(after)):
            return agent
        with self.at(f"{path}.status"):
            if target == Status.RETIRED:
                return agent_services.agent_retire(actor=self.actor, agent=agent,
                                                   reason=RETIRE_REASON)
            if agent.status == Status.PAUSED:
                agent = agent_services.agent_resume(actor=self.actor, agent=agent)
            goal = paused_from if target == Status.PAUSED else target
            while agent.status != goal:
                step = 1 if STATUS_LADDER.index(goal) > STATUS_LADDER.index(agent.status) else -1
                agent = agent_services.agent_move(
                    actor=self.actor, agent=agent,
                    to_status=STATUS_LADDER[STATUS_LADDER.index(agent.status) + step])
            if target == Status.PAUSED:
                agent = agent_services.agent_pause(actor=self.actor, agent=agent, reason=reason)
        return agent


def _rank(status: str, paused_from: str | None) -> int:
    """Position on proposed → pilot → live; a paused agent counts where it was paused from."""
    if status == Status.PAUSED:
        status = paused_from or Status.PROPOSED
    return STATUS_LADDER.index(status) if status in STATUS_LADDER else len(STATUS_LADDER)


# --- exporting -------------------------------------------------------------------------------

class _Flow(dict):
    """A mapping written on one line, like `owners: {business: bob, ...}` in the README."""


class _FlowList(list):
    """A list of names written on one line: `pausers: [olivia]`."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)  # indent lists under their key


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data, flow_style=True))
_Dumper.add_representer(_FlowList, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=True))
_Dumper.add_representer(str, lambda dumper, data: dumper.represent_scalar(
    "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None))  # runbooks keep lines


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _compact(mapping: dict) -> dict:
    """Leave out what is empty: the format reads a missing key as its empty default."""
    return {key: value for key, value in mapping.items() if value not in (None, "", [], {})}


def _agent_to_file(spec: dict) -> dict:
    paused = spec["status"] == Status.PAUSED
    out = {key: spec[key] for key in ("slug", "name", "description", "business_outcome",
                                      "definition_of_done", "workflow", "autonomy_level",
                                      "status")}
    out["paused_from"] = spec["paused_from"] if paused else None
    out["pause_reason"] = spec["pause_reason"] if paused else None
    out["owners"] = _Flow(_compact(spec["owners"]))
    for key in ("pausers", "reviewers", "review_groups"):
        out[key] = _FlowList(spec[key])
    out["review_sample_rate"] = spec["review_sample_rate"]
    out["confidence"] = _Flow(spec["confidence"])
    out["max_writes_per_hour"] = spec["max_writes_per_hour"]
    budget = spec["monthly_cost_budget"]
    out["monthly_cost_budget"] = _number(budget) if budget is not None else None
    out["review_cadence"] = spec["review_cadence"]
    out["access"] = _Flow(spec["access"])
    out["sources"] = _FlowList(spec["sources"])
    out["guardrails"] = [
        _compact({**g, "value": None if g["operator"] == Guardrail.Operator.CHANGED
                  else g["value"]})
        for g in spec["guardrails"]]
    out["rollback"] = spec["rollback"]
    return _compact(out)


def export_data() -> dict:
    """The whole registry in the file's shape (plain data, ready for yaml)."""
    systems = [_Flow(_compact(system_state(s))) for s in System.objects.order_by("slug")]
    sources = []
    for source in DataSource.objects.select_related("maintainer").order_by("slug"):
        state = source_state(source)
        state["max_age"] = format_duration(state["max_age"]) if state["max_age"] else None
        state["refreshed_at"] = (format_timestamp(state["refreshed_at"])
                                 if state["refreshed_at"] else None)
        state["approved"] = state["approved"] or None  # false is the default
        sources.append(_compact(state))
    # The role groups (Admins, RevOps...) are people administration, not the registry: an
    # export applied elsewhere must not empty that installation's Admins.
    groups = [_Flow({**state, "members": _FlowList(state["members"])})
              for state in map(group_state, Group.objects.exclude(name__in=ROLE_GROUPS)
                               .prefetch_related("user_set").order_by("name"))]
    agents = list(_agents_queryset().order_by("slug"))
    users, review_groups = _perm_holders(agents, "review_agent")
    return _compact({
        "systems": systems,
        "data_sources": sources,
        "groups": groups,
        "agents": [_agent_to_file(agent_state(a, reviewers=users.get(a.pk, []),
                                              review_groups=review_groups.get(a.pk, [])))
                   for a in agents],
    })


def export() -> str:
    header = ("# Steward agent registry. Apply with: python manage.py apply_agents FILE\n"
              "# (add --dry-run to see the changes first).\n")
    return header + yaml.dump(export_data(), Dumper=_Dumper, sort_keys=False,
                              allow_unicode=True, width=100, default_flow_style=False)
