"""Least privilege: what a client may do, and the decision for one request (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

OPERATION_TYPES = ("query", "mutation", "subscription")
# Read-only REST: the methods RFC 9110 section 9.2.1 calls safe (TRACE is never forwarded
# usefully by an API and is left out).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY = "*"
# Segments that a server may resolve to another path than the one a glob saw (RFC 3986
# section 5.2.4), and encoded separators it may decode: refused where REST rules apply.
# ("..;" too: servlet containers drop ";parameters" before resolving dots.)
_AMBIGUOUS_SEGMENT = re.compile(r"(?:^|/)(?:\.|%2e){1,2}(?:[/;]|$)|%2f|%5c|\\", re.I)


class Operation(Protocol):
    """One GraphQL operation the upstream would run (proxy.policy.graphql.Operation)."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def fields(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class RestRule:
    """``METHOD /path/glob``: a method (or ``*``) and a glob on the raw path (fnmatch: ``*``
    matches any characters, ``/`` included)."""

    method: str
    pattern: str

    def matches(self, method: str, path: str) -> bool:
        return (self.method == ANY or self.method == method) and fnmatchcase(path, self.pattern)

    def __str__(self) -> str:
        return f"{self.method} {self.pattern}"


@dataclass(frozen=True)
class Policy:
    """What one client may do. With no list given, everything the key allows, unless read-only;
    once any list is given, everything it does not list is denied."""

    read_only: bool = False
    # Operation type -> allowed root fields (``*``: any). None: no GraphQL list given.
    graphql: Mapping[str, frozenset[str]] | None = field(default=None)
    rest: tuple[RestRule, ...] | None = None
    allow_user_header: bool = False  # X-R3-User (act as another user) forwarded

    @property
    def has_lists(self) -> bool:
        return self.graphql is not None or self.rest is not None

    @property
    def active(self) -> bool:
        """Whether requests are looked at at all; an inactive policy is today's behaviour."""
        return self.read_only or self.has_lists


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the rule (a bounded label, for metrics) and a message that
    names what was refused."""

    rule: str
    message: str


def describe(operation: Operation) -> str:
    """``mutation deleteDevice`` (``mutation Cleanup: deleteDevice, ...`` when named)."""
    fields = ", ".join(operation.fields) or "(no fields)"
    return (
        f"{operation.type} {operation.name}: {fields}"
        if operation.name
        else (f"{operation.type} {fields}")
    )


def check_graphql(policy: Policy, operations: Sequence[Operation]) -> Refusal | None:
    """The first operation the policy refuses, as a Refusal; None when all may run."""
    for operation in operations:
        if policy.read_only and operation.type != "query":
            return Refusal(
                "read_only",
                f"{describe(operation)} is refused: this proxy is read-only, only queries "
                "are forwarded",
            )
        if policy.graphql is None:
            if policy.has_lists:
                return Refusal(
                    "not_listed",
                    f"{describe(operation)} is refused: this client has REST rules only, "
                    "and no graphql_* list",
                )
            continue
        allowed = policy.graphql.get(operation.type)
        if allowed is None:
            return Refusal(
                "not_listed",
                f"{describe(operation)} is refused: this client has no graphql_"
                f"{operation.type} list",
            )
        if ANY in allowed:
            continue
        for name in operation.fields:
            # Introspection (__typename, __schema, __type) reads the schema, never data.
            if name not in allowed and not name.startswith("__"):
                return Refusal(
                    "not_listed",
                    f"{operation.type} field {name} is refused: it is not in this client's "
                    f"graphql_{operation.type} list",
                )
    return None


def check_rest(policy: Policy, method: str, path: str) -> Refusal | None:
    """A request that is not GraphQL: the read-only rule, then the client's REST rules."""
    if policy.read_only and method not in SAFE_METHODS:
        return Refusal(
            "read_only",
            f"{method} {path} is refused: this proxy is read-only, REST requests may only be "
            "GET, HEAD or OPTIONS",
        )
    if not policy.has_lists:
        return None
    if policy.rest is None:
        return Refusal("not_listed", f"{method} {path} is refused: this client has no rest rules")
    if _AMBIGUOUS_SEGMENT.search(path):
        return Refusal(
            "ambiguous_path",
            f"{method} {path} is refused: '.' or '..' segments and encoded slashes are not "
            "allowed where rest rules apply (the API could resolve them to another path)",
        )
    if not any(rule.matches(method, path) for rule in policy.rest):
        return Refusal(
            "not_listed", f"{method} {path} is refused: it matches none of this client's rest rules"
        )
    return None
