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

The modules, in the order data flows through them (each imports only those above it):

    format.py     the keys, RegistryError, Registry (a parsed file), durations and timestamps
    parsing.py    parse() and load_file(): strict YAML, then every entry checked and normalised
    state.py      the database's side in the file's shape: system_state() ... agent_state()
    applying.py   apply(): compare the file with the state, call a service for each difference
    exporting.py  export(): the state written out as a file

Callers import from the package: `from agents import registry_yaml`.
"""

from agents.registry_yaml.applying import apply
from agents.registry_yaml.exporting import export, export_data
from agents.registry_yaml.format import (
    Registry,
    RegistryError,
    format_duration,
    format_timestamp,
    parse_duration,
)
from agents.registry_yaml.parsing import load_file, parse

__all__ = [
    "Registry",
    "RegistryError",
    "apply",
    "export",
    "export_data",
    "format_duration",
    "format_timestamp",
    "load_file",
    "parse",
    "parse_duration",
]
