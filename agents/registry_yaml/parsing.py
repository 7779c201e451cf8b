"""Reading a registry file: strict YAML, then every entry checked, normalised and defaulted.

parse() collects every problem of the file before it raises, each with its path
(agents[x].owners.business), so one run names them all.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import validate_slug
from django.utils.dateparse import parse_datetime

from agents import lifecycle
from agents.models import AccessKind, Agent, DataSource, Guardrail, RollbackStep, System
from agents.registry_yaml.format import (
    AGENT_KEYS,
    CONFIDENCE_KEYS,
    GROUP_KEYS,
    GUARDRAIL_KEYS,
    OWNER_ROLES,
    ROLLBACK_KEYS,
    SOURCE_KEYS,
    STATUS_LADDER,
    SYSTEM_KEYS,
    TOP_KEYS,
    Registry,
    RegistryError,
    parse_duration,
    show_value,
)

User = get_user_model()
Status = Agent.Status


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


def _given(value: Any) -> str:
    """A value from the file as an error message quotes it: 'greater', 5, true."""
    return repr(value) if isinstance(value, str) else show_value(value)


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
