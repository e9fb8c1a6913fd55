"""Policy: who may call what, decided before any stub is unmarshalled (rules.py), read from a TOML
file (load.py). docs/policy.md is the reference."""

from .load import PolicyError, load, parse
from .rules import UNKNOWN, Action, Decision, Policy, Principal, Rule, Subject

__all__ = [
    "UNKNOWN",
    "Action",
    "Decision",
    "Policy",
    "PolicyError",
    "Principal",
    "Rule",
    "Subject",
    "load",
    "parse",
]
