"""Which GraphQL operations the upstream will run for a request, read with graphql-core."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from graphql import GraphQLError, get_operation_ast, parse
from graphql.language import ast

# Parsing is linear in tokens; the limits bound the work a hostile document can cause.
MAX_TOKENS = 50_000


@dataclass(frozen=True)
class Operation:
    """One operation: its type, its name (None when anonymous) and its root field names."""

    type: str
    name: str | None
    fields: tuple[str, ...]


class BadGraphQL(Exception):
    """The request cannot be inspected; the message tells the client what to fix."""

    def __init__(self, message: str) -> None:
        # Printable ASCII only (names and graphql-core messages echo client text), and short.
        text = "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in message)
        super().__init__(text if len(text) <= 200 else text[:197] + "...")


class _NotThisFormat(BadGraphQL):
    """The body is not in the format tried at all: another interpretation may still apply."""


def graphql_operations(
    method: str, query_string: str, content_type: str | None, body: bytes
) -> list[Operation]:
    """Every operation the upstream will run for this request: one per request in a batch."""
    # HTTP methods are case-sensitive (RFC 9110 section 9.1): "get" is not GET.
    if method in ("GET", "HEAD"):  # GraphQL-over-HTTP: the request is in the URL's query
        operations = _form(query_string)
        if operations is None:
            raise BadGraphQL("a GET request carries the document in the URL: ?query={...}")
        return operations
    if method != "POST":
        return []
    in_url = parse_qs(query_string.replace(";", "&"), keep_blank_values=True)
    if "query" in in_url or "operationName" in in_url:
        # Some servers (express-graphql) let the URL's parameters win over the body's.
        raise BadGraphQL("a POST request carries query and operationName in its body, not the URL")
    # No Content-Type: the proxy sends application/json. An empty one is forwarded: unknown.
    media = "application/json" if content_type is None else content_type
    media = media.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return _json_requests(_load_json(body))
    if media == "application/graphql":  # no operationName: a single operation only
        return [_select(_parse(_text(body)), None)]
    if media.startswith("multipart/"):
        raise BadGraphQL("a multipart request (a file upload) cannot be inspected: send JSON")
    return _guess(body)


def _guess(body: bytes) -> list[Operation]:
    """Form or unknown type: the upstream may read the body as JSON, a form or a document, so
    each reading whose format the body is in counts (the caller refuses if any one fails)."""
    readers: list[tuple[str, Callable[[bytes], Any], Callable[[Any], list[Operation] | None]]] = [
        ("JSON", _load_json, _json_requests),
        ("a form", _text, _form),
        ("a GraphQL document", lambda body: _parse(_text(body)), lambda d: [_select(d, None)]),
    ]
    found: list[Operation] = []
    for label, decode, interpret in readers:
        try:
            try:
                decoded = decode(body)
            except _NotThisFormat:  # not in this format at all; anything wrong inside is refused
                continue
            found += interpret(decoded) or []
        except BadGraphQL as error:
            raise BadGraphQL(f"the body read as {label}: {error}") from None
    if not found:
        raise BadGraphQL(
            'the body is not a GraphQL request: send application/json {"query": "..."}, '
            "application/graphql, or a form with query="
        )
    return found


def _text(body: bytes) -> str:
    # Replacement is safe: GraphQL's tokens are ASCII and other characters are legal only in
    # strings and comments (GraphQL spec 2.1), so any ASCII-compatible decoding of the bytes
    # gives the upstream a document of the same structure.
    return body.decode("utf-8", "replace")


def _form(text: str) -> list[Operation] | None:
    """The request in a URL query or form body (None without a query parameter)."""
    params = parse_qs(text, keep_blank_values=True)
    # Servers that also split on ';' (HTML 4.01 appendix B.2.2) would see other parameters.
    split = parse_qs(text.replace(";", "&"), keep_blank_values=True)
    found: dict[str, str] = {}
    for key in ("query", "operationName"):
        if params.get(key) != split.get(key):
            raise BadGraphQL(f"a ';' in the parameters changes {key}: encode it as %3B")
        values = params.get(key, [])
        if len(values) > 1:  # the server might take either one
            raise BadGraphQL(f"the {key} parameter is given {len(values)} times: give it once")
        if values:
            found[key] = values[0]
    if "query" not in found:
        return None
    return [_select(_parse(found["query"]), found.get("operationName"))]


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:  # RFC 8259 section 4: names SHOULD be unique; servers pick differently
            raise BadGraphQL(f"the JSON key {_quote(key)} appears twice in an object: send it once")
        seen[key] = value
    return seen


def _load_json(body: bytes) -> object:
    try:
        data: object = json.loads(body, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise _NotThisFormat(f"the body is not valid JSON ({error.msg} at {where})") from None
    except UnicodeDecodeError:  # a server may decode it with replacement and still run it
        raise BadGraphQL("the JSON body is not UTF-8, UTF-16 or UTF-32 text") from None
    except (RecursionError, ValueError):  # parsers that accept these would run the request
        raise BadGraphQL("the JSON body is nested too deeply or holds a huge number") from None
    return data


def _json_requests(data: object) -> list[Operation]:
    if not isinstance(data, list):
        return [_json_request(data)]
    if not data:
        raise BadGraphQL('the JSON batch is empty: send [{"query": "..."}, ...]')
    operations = []
    for index, request in enumerate(data, 1):
        try:
            operations.append(_json_request(request))
        except BadGraphQL as error:  # never a _NotThisFormat: the other members may still run
            raise BadGraphQL(f"request {index} of the batch: {error}") from None
    return operations


def _json_request(request: object) -> Operation:
    if not isinstance(request, dict):
        raise BadGraphQL('send a JSON object {"query": "..."} or an array of them')
    query, name = request.get("query"), request.get("operationName")
    if query is None:
        extensions = request.get("extensions")
        if isinstance(extensions, dict) and "persistedQuery" in extensions:
            raise BadGraphQL(
                "a persisted query (a hash, no query text) cannot be inspected: "
                'send the document in "query"'
            )
        raise BadGraphQL('the request has no "query": send {"query": "..."}')
    if not isinstance(query, str):
        raise BadGraphQL('"query" must be a string holding the GraphQL document')
    if name is not None and not isinstance(name, str):
        raise BadGraphQL('"operationName" must be a string or null')
    return _select(_parse(query), name)


def _parse(source: str) -> ast.DocumentNode:
    try:
        return parse(
            source, no_location=True, max_lexical_tokens=MAX_TOKENS, max_comments=MAX_TOKENS
        )
    except GraphQLError as error:
        message = error.message.removeprefix("Syntax Error: ").splitlines()[0]
        at = (error.locations or [])[:1]
        where = "".join(f" at line {loc.line}, column {loc.column}" for loc in at)
        # graphql-core's limits (tokens, nesting) end "Parsing aborted.": the upstream may well
        # parse such a document, so it is refused rather than taken for another format.
        kind = BadGraphQL if "Parsing aborted" in message else _NotThisFormat
        raise kind(f"GraphQL syntax error{where}: {message}") from None
    except RecursionError:  # graphql-core reports its own as a GraphQLError; kept as a guard
        raise BadGraphQL("the GraphQL document is nested too deeply to inspect") from None


def _select(document: ast.DocumentNode, name: str | None) -> Operation:
    """GetOperation (GraphQL spec 6.1), with graphql-core's own get_operation_ast."""
    operations = [d for d in document.definitions if isinstance(d, ast.OperationDefinitionNode)]
    operation = get_operation_ast(document, name)
    if operation is None:
        if not operations:
            raise BadGraphQL("the document has no query, mutation or subscription")
        if name is None:
            raise BadGraphQL(f"the document has {len(operations)} operations: send operationName")
        # "" too: a GraphQL Name has at least one character (spec 2.1.9), so none matches it.
        raise BadGraphQL(f"the document has no operation named {_quote(name)}")
    if name is not None and [o.name and o.name.value for o in operations].count(name) > 1:
        # Operation Name Uniqueness (spec 5.2.1.1): a server that does not validate may run any.
        raise BadGraphQL(f"several operations are named {_quote(name)}: name them uniquely")
    return Operation(
        operation.operation.value,
        operation.name.value if operation.name else None,
        _root_fields(operation, document),
    )


def _root_fields(
    operation: ast.OperationDefinitionNode, document: ast.DocumentNode
) -> tuple[str, ...]:
    """Root field names, through fragments (CollectFields, spec 6.3.2), @skip/@include ignored:
    a field that might be skipped still counts."""
    definitions = [d for d in document.definitions if isinstance(d, ast.FragmentDefinitionNode)]
    fragments = {definition.name.value: definition for definition in definitions}
    if len(fragments) < len(definitions):  # Fragment Name Uniqueness (spec 5.5.1.1)
        raise BadGraphQL("two fragments have the same name: name fragments uniquely")
    fields: dict[str, None] = {}  # ordered set
    # Depth-first with an explicit stack (no Python recursion); `walking` holds the fragments
    # on the current path, so a spread of one of them is a cycle (spec 5.5.2.2).
    stack: list[tuple[str | None, Iterator[ast.SelectionNode]]] = [
        (None, iter(operation.selection_set.selections))
    ]
    walking: set[str] = set()
    done: set[str] = set()
    while stack:
        fragment, selections = stack[-1]
        selection = next(selections, None)
        if selection is None:
            stack.pop()
            if fragment is not None:
                walking.discard(fragment)
                done.add(fragment)
        elif isinstance(selection, ast.FieldNode):
            fields.setdefault(selection.name.value, None)  # the name, never the alias
        elif isinstance(selection, ast.InlineFragmentNode):
            stack.append((None, iter(selection.selection_set.selections)))
        elif isinstance(selection, ast.FragmentSpreadNode) and selection.name.value not in done:
            spread = selection.name.value
            if spread in walking:
                raise BadGraphQL(f"fragment {spread} spreads itself (a cycle): remove the cycle")
            if spread not in fragments:  # spec 5.5.2.1
                raise BadGraphQL(f"fragment {spread} is used but not defined: define it")
            walking.add(spread)
            stack.append((spread, iter(fragments[spread].selection_set.selections)))
    return tuple(fields)


def _quote(text: str) -> str:
    return json.dumps(text if len(text) <= 60 else text[:57] + "...")
