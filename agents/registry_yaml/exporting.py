"""Exporting: the registry in the database written as the file apply_agents reads.

An export applied to the database it came from changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

import yaml
from django.contrib.auth.models import Group

from agents.models import Agent, DataSource, Guardrail, System
from agents.registry_yaml.format import format_duration, format_timestamp
from agents.registry_yaml.state import (
    agent_states,
    agents_for_state,
    group_state,
    source_state,
    system_state,
)
from portal.roles import ROLE_GROUPS

Status = Agent.Status


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
    agents = agent_states(list(agents_for_state().order_by("slug")))
    return _compact({
        "systems": systems,
        "data_sources": sources,
        "groups": groups,
        "agents": [_agent_to_file(state) for state in agents],
    })


def export() -> str:
    header = ("# Steward agent registry. Apply with: python manage.py apply_agents FILE\n"
              "# (add --dry-run to see the changes first).\n")
    return header + yaml.dump(export_data(), Dumper=_Dumper, sort_keys=False,
                              allow_unicode=True, width=100, default_flow_style=False)
