"""Which GraphQL operations the upstream will run for a request, read with graphql-core."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
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


def graphql_operations(
    method: str, query_string: str, content_type: str | None, body: bytes
) -> list[Operation]:
    """Every operation the upstream will run for this request: one per request in a batch."""
    # HTTP methods are case-sensitive (RFC 9110 section 9.1): "get" is not GET.
    if method in ("GET", "HEAD"):  # GraphQL-over-HTTP: the request is in the URL's query
        if "?" in query_string or "#" in query_string:
            # Servers differ on where a query string ends (some cut it at a second '?').
            raise BadGraphQL("the query string holds a raw '?' or '#': percent-encode it")
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
    # No Content-Type: the proxy sends application/json.
    media, charset = _media_type("application/json" if content_type is None else content_type)
    if charset not in (None, "utf-8", "utf8"):
        # A server that honours the charset would read other characters than the proxy did
        # (UTF-7 can hide a whole second "query" key in what UTF-8 reads as one string).
        raise BadGraphQL("a GraphQL body must be UTF-8: send charset=utf-8 or no charset")
    if media == "application/json" or media.endswith("+json"):
        return _json_requests(_load_json(body))
    if media == "application/graphql":  # no operationName: a single operation only
        return [_select(_parse(_text(body)), None)]
    if media.startswith("multipart/"):
        raise BadGraphQL("a multipart request (a file upload) cannot be inspected: send JSON")
    # Forms and other types are read differently by different servers (qs-style keys such as
    # [query]=...): only the two unambiguous forms are inspected, anything else is refused.
    raise BadGraphQL(
        "send the GraphQL request as Content-Type: application/json (or application/graphql)"
    )


def _media_type(value: str) -> tuple[str, str | None]:
    """The media type and its charset parameter (RFC 9110 section 8.3.1), lower-case."""
    media, _, parameters = value.partition(";")
    charset = None
    for parameter in parameters.split(";"):
        name, _, given = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = given.strip().strip('"').lower()
    return media.strip().lower(), charset


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:  # a server decoding otherwise could read another document
        raise BadGraphQL("the GraphQL body is not UTF-8 text") from None


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
    # UTF-8 only, no byte order mark (RFC 8259 section 8.1): json.loads would also guess
    # UTF-16 and UTF-32, which a server reading UTF-8 would see otherwise.
    text = _text(body)
    try:
        data: object = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise BadGraphQL(f"the body is not valid JSON ({error.msg} at {where})") from None
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
        except BadGraphQL as error:
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
        raise BadGraphQL(f"GraphQL syntax error{where}: {message}") from None
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
