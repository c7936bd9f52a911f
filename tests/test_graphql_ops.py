"""Which GraphQL operations a request runs: every format, the operation choice, the root fields,
and refusals that say what to fix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from graphql import OperationDefinitionNode, get_operation_ast, parse
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.policy import graphql as graphql_ops
from proxy.policy.graphql import MAX_TOKENS, BadGraphQL, Operation, graphql_operations


def post_json(payload: object, content_type: str | None = "application/json") -> list[Operation]:
    return graphql_operations("POST", "", content_type, json.dumps(payload).encode())


def one(query: str, name: str | None = None) -> Operation:
    [operation] = post_json({"query": query, "operationName": name})
    return operation


def refused(method: str, query_string: str, content_type: str | None, body: bytes) -> str:
    with pytest.raises(BadGraphQL) as caught:
        graphql_operations(method, query_string, content_type, body)
    message = str(caught.value)
    assert message.isascii() and message.isprintable() and len(message) <= 200, message
    return message


def refused_json(payload: object) -> str:
    return refused("POST", "", "application/json", json.dumps(payload).encode())


# The operation and its type


def test_shorthand_query() -> None:
    assert post_json({"query": "{ login { email } }"}) == [Operation("query", None, ("login",))]


TWO = "query A { devices { id } } mutation B { deleteDevice(id: 1) }"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("B", Operation("mutation", "B", ("deleteDevice",))),
        ("A", Operation("query", "A", ("devices",))),
    ],
)
def test_operation_name_selects_the_operation(name: str, expected: Operation) -> None:
    assert one(TWO, name) == expected


def test_several_operations_need_an_operation_name() -> None:
    assert "2 operations" in refused_json({"query": TWO})
    assert "operationName" in refused_json({"query": TWO, "operationName": None})


def test_an_unknown_operation_name_is_named() -> None:
    assert '"C"' in refused_json({"query": TWO, "operationName": "C"})


def test_an_empty_operation_name_matches_no_operation_as_graphql_core_does() -> None:
    # get_operation_ast compares "" with each name (it is not None), and a Name is never empty.
    assert get_operation_ast(parse("query A { a }"), "") is None
    assert '""' in refused_json({"query": "query A { a }", "operationName": ""})
    assert '""' in refused("GET", "query=%7Ba%7D&operationName=", None, b"")


def test_a_named_operation_alone_is_chosen_without_operation_name() -> None:
    assert one("subscription Watch { deviceEvents }") == Operation(
        "subscription", "Watch", ("deviceEvents",)
    )


@pytest.mark.parametrize(
    "query",
    [
        "# mutation { deleteDevice }\n{ a }",
        '{ a(note: "mutation { deleteDevice }") }',
        '{ a(note: """mutation { x }""") }',
        '{ a(note: """\n  mutation {\n  x } \\""" # """) }',
        '"""mutation""" query { a }',  # a description (GraphQL spec 2.3 in its 2025 draft)
        '"mutation { d }" query Q { a }',
        "{ mutation subscription: query }",  # keywords are also names
        "query mutation { a }",
    ],
)
def test_the_word_mutation_elsewhere_does_not_make_a_mutation(query: str) -> None:
    assert [operation.type for operation in post_json({"query": query})] == ["query"]


def test_a_mutation_fragment_spread_in_a_query_is_a_query() -> None:
    query = "query Q { ...M } fragment M on Mutation { deleteDevice(id: 1) }"
    assert one(query) == Operation("query", "Q", ("deleteDevice",))


def test_duplicate_operation_names_are_refused() -> None:
    # get_operation_ast takes the first; a server that does not validate may run the other.
    query = "query A { a } mutation A { deleteDevice }"
    assert "several operations" in refused_json({"query": query, "operationName": "A"})


# Root fields


def test_a_mutation_behind_an_alias_gives_the_real_field_name() -> None:
    assert one("mutation { x: deleteDevice(id: 1) { id } }").fields == ("deleteDevice",)


def test_a_mutation_behind_a_fragment_spread_gives_the_real_field_name() -> None:
    query = "mutation { ...F } fragment F on Mutation { y: deleteDevice(id: 1) }"
    assert one(query) == Operation("mutation", None, ("deleteDevice",))


def test_fragments_are_resolved_recursively_deduplicated_in_order_of_first_appearance() -> None:
    query = """
        fragment G on Query { d b }
        { b ... on Query { a ...F } a @skip(if: true) e: c }
        fragment F on Query { c ... @include(if: false) { b ...G } }
    """
    assert one(query).fields == ("b", "a", "c", "d")


def test_a_fragment_reached_twice_is_not_a_cycle() -> None:
    query = (
        "{ ...A ...B } fragment A on Q { a ...C } fragment B on Q { ...C b } fragment C on Q { c }"
    )
    assert one(query).fields == ("a", "c", "b")


def test_introspection_and_typename_are_kept() -> None:
    assert one('{ __typename __schema { types { name } } __type(name: "X") { name } }').fields == (
        "__typename",
        "__schema",
        "__type",
    )


def test_nested_fields_are_not_root_fields() -> None:
    assert one("{ devices { items { deleteDevice } } }").fields == ("devices",)


def test_an_unknown_fragment_is_named() -> None:
    assert "Missing" in refused_json({"query": "{ a ...Missing }"})


@pytest.mark.parametrize(
    "query",
    [
        "{ ...F } fragment F on Q { a ...F }",
        "{ ...F } fragment F on Q { ... { ...G } } fragment G on Q { b ...F }",
    ],
)
def test_cyclic_fragments_are_refused(query: str) -> None:
    assert "cycle" in refused_json({"query": query})


def test_duplicate_fragment_names_are_refused() -> None:
    query = "{ ...F } fragment F on Q { a } fragment F on Q { deleteDevice }"
    assert "same name" in refused_json({"query": query})


@pytest.mark.parametrize(
    "query", ["fragment F on Query { a }", "type Query { a: Int }", "schema { query: Q }"]
)
def test_a_document_without_an_operation_is_refused(query: str) -> None:
    assert "no query, mutation or subscription" in refused_json({"query": query})


# Documents that do not parse or are too big


def test_a_syntax_error_gives_graphql_core_message_on_one_line() -> None:
    message = refused_json({"query": "query A {\n  a(\n}"})
    assert message.startswith("GraphQL syntax error at line 3, column 1: ")


def test_deep_nesting_is_refused_without_crashing() -> None:
    deep = "{a" * 5000 + "}" * 5000
    for method, query_string, content_type, body in [
        ("POST", "", None, json.dumps({"query": deep}).encode()),
        ("GET", urlencode({"query": deep}), None, b""),
        ("POST", "", "application/graphql", deep.encode()),
    ]:
        assert "nested too deeply" in refused(method, query_string, content_type, body)


def test_moderate_nesting_is_inspected() -> None:
    assert one("{a" * 100 + "}" * 100).fields == ("a",)
    assert one("{" + "... {" * 100 + "deleteDevice" + "}" * 101).fields == ("deleteDevice",)


def test_too_many_tokens_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert f"more than {MAX_TOKENS} tokens" in refused_json(
        {"query": "{" + " a" * MAX_TOKENS + "}"}
    )
    monkeypatch.setattr(graphql_ops, "MAX_TOKENS", 100)  # the same limit, quicker to reach
    assert one("{" + " a" * 98 + " }").fields == ("a",)
    assert "more than 100 tokens" in refused_json({"query": "{" + " a" * 99 + " }"})


def test_too_many_comments_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graphql_ops, "MAX_TOKENS", 100)
    assert one("#\n" * 100 + "{ a }").fields == ("a",)
    assert "more than 100 comments" in refused_json({"query": "#\n" * 101 + "{ a }"})


def test_long_names_are_cut_in_messages() -> None:
    message = refused_json({"query": "{ a }", "operationName": "N" * 1000})
    assert "NNN..." in message and len(message) < 120


# GET and HEAD


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_reads_the_query_string(method: str) -> None:
    assert graphql_operations(method, "query=mutation%20%7B%20x%20%7D", None, b"") == [
        Operation("mutation", None, ("x",))
    ]


def test_get_with_operation_name_ignores_variables_extensions_and_the_body() -> None:
    query_string = urlencode(
        [("query", TWO), ("operationName", "A"), ("variables", "{}"), ("variables", "[]")]
    )
    body = json.dumps({"query": "mutation { deleteDevice }"}).encode()
    assert graphql_operations("GET", query_string + "&extensions=x", "application/json", body) == [
        Operation("query", "A", ("devices",))
    ]


def test_get_decodes_plus_and_percent_like_parse_qs() -> None:
    assert graphql_operations("GET", "query=query+Q+%7B+a+%7D", None, b"") == [
        Operation("query", "Q", ("a",))
    ]


@pytest.mark.parametrize(
    "query_string",
    [
        "query=%7Ba%7D&query=mutation%7Bd%7D",
        "query=%7Ba%7D&operationName=A&operationName=B",
    ],
)
def test_get_refuses_a_parameter_given_twice(query_string: str) -> None:
    assert "2 times" in refused("GET", query_string, None, b"")


def test_get_without_query_is_refused() -> None:
    assert "?query=" in refused("GET", "variables=%7B%7D", None, b"")
    assert "?query=" in refused("GET", "", None, b'{"query": "{ a }"}')


def test_a_semicolon_that_would_change_the_query_is_refused() -> None:
    # A server that splits on ';' would run the mutation, not a comment-hidden query.
    assert "%3B" in refused("GET", "query=%7Ba%7D%23;query=mutation%7Bd%7D", None, b"")
    assert "%3B" in refused("GET", "x;query=mutation%7Bd%7D", None, b"")
    allowed = graphql_operations("GET", "query=%7Ba%7D&variables=a;b", None, b"")
    assert allowed == [Operation("query", None, ("a",))]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "get", "post", "TRACE"])
def test_other_methods_are_not_graphql(method: str) -> None:
    assert graphql_operations(method, "query=mutation%7Bd%7D", None, b"{") == []


# POST by media type


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "Application/JSON ; charset=utf-8",
        "application/graphql-response+json",
        "application/vnd.example+json",
    ],
)
def test_json_media_types(content_type: str | None) -> None:
    assert post_json({"query": "mutation { d }"}, content_type) == [
        Operation("mutation", None, ("d",))
    ]


def test_post_refuses_query_parameters_in_the_url() -> None:
    body = json.dumps({"query": "{ a }"}).encode()
    for query_string in ("query=mutation%7Bd%7D", "operationName=B", "x;query="):
        assert "not the URL" in refused("POST", query_string, None, body)
    assert graphql_operations("POST", "trace=1", None, body) == [Operation("query", None, ("a",))]


def test_a_batch_with_a_hidden_mutation_returns_every_operation() -> None:
    batch = [{"query": "{ devices { id } }"}, {"query": TWO, "operationName": "B"}]
    assert post_json(batch) == [
        Operation("query", None, ("devices",)),
        Operation("mutation", "B", ("deleteDevice",)),
    ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "batch is empty"),
        ([{"query": "{ a }"}, [{"query": "{ b }"}]], "request 2 of the batch"),
        ([{"query": "{ a }"}, {"query": "{"}], "request 2 of the batch: GraphQL syntax error"),
        ({"operationName": "A"}, 'no "query"'),
        ({"query": None}, 'no "query"'),
        ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}, "persisted"),
        ({"query": 5}, '"query" must be a string'),
        ({"query": ["{ a }"]}, '"query" must be a string'),
        ({"query": "{ a }", "operationName": 5}, '"operationName" must be a string or null'),
        ({"query": "{ a }", "operationName": ["A"]}, '"operationName" must be a string or null'),
        ({"query": "{ a }", "operationName": True}, '"operationName" must be a string or null'),
        ("{ a }", "JSON object"),
        (None, "JSON object"),
    ],
)
def test_json_requests_that_cannot_be_inspected(payload: object, expected: str) -> None:
    assert expected in refused_json(payload)


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ a }", "query": "mutation { d }"}',
        b'{"query": "{ a }", "\\u0071uery": "mutation { d }"}',
        b'{"query": "{ a }", "variables": {"x": 1, "x": 2}}',
        b'[{"query": "{ a }"}, {"query": "{ b }", "operationName": null, "operationName": "B"}]',
    ],
)
def test_duplicate_json_keys_are_refused(body: bytes) -> None:
    assert "appears twice" in refused("POST", "", "application/json", body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "not valid JSON"),
        (b'{"query": "{ a }",}', "not valid JSON"),
        (b'{"query": "{ a(s: \\"\xff\\") }"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"query": "{ a }", "n": ' + b"1" * 5000 + b"}", "huge number"),
    ],
)
def test_invalid_json_is_refused(body: bytes, expected: str) -> None:
    assert expected in refused("POST", "", "application/json", body)


def test_application_graphql_body_is_the_document() -> None:
    body = '# a comment\nmutation Del { deleteDevice(note: "é") }'.encode()
    for content_type in ("application/graphql", "APPLICATION/GRAPHQL; charset=utf-8"):
        assert graphql_operations("POST", "", content_type, body) == [
            Operation("mutation", "Del", ("deleteDevice",))
        ]


def test_application_graphql_cannot_choose_among_several_operations() -> None:
    assert "2 operations" in refused("POST", "", "application/graphql", TWO.encode())


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"query=%7B+a+%7D"),
        # qs-style keys: express-graphql behind express.urlencoded reads [query] as query.
        ("application/x-www-form-urlencoded", b"{ a } #&[query]=mutation%7Bd%7D"),
        ("text/plain", b'{"query": "mutation { d }"}'),
        ("", b'{"query": "{ a }"}'),
        ("application/octet-stream", b"{ a }"),
    ],
)
def test_bodies_other_than_json_or_graphql_are_refused(content_type: str, body: bytes) -> None:
    # Servers read forms and unknown types in different ways: only two forms are inspected.
    message = refused("POST", "", content_type, body)
    assert "application/json" in message and "application/graphql" in message


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-7",
        'application/json; charset="UTF-7"',
        "application/json;charset=latin1",
        "application/graphql; charset=utf-16",
    ],
)
def test_a_charset_other_than_utf8_is_refused(content_type: str) -> None:
    # UTF-7 hides '"query":"mutation..."' inside what UTF-8 reads as one string value.
    body = b'{"query":"{login{id}}","x":"+ACIALAAiAHEAdQBlAHIAeQAiADoAIgBtAHUAdABhAHQAaQBvAG4-"}'
    assert "UTF-8" in refused("POST", "", content_type, body)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", 'text/x; a=";"'])
def test_charset_utf8_is_fine_and_parameters_are_read_as_such(content_type: str) -> None:
    body = b'{"query": "{ a }"}'
    if content_type.startswith("application/json"):
        assert graphql_operations("POST", "", content_type, body)[0].fields == ("a",)
    else:
        refused("POST", "", content_type, body)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"query": "mutation { d }"}).encode("utf-16"),
        b"\xef\xbb\xbf" + json.dumps({"query": "{ a }"}).encode(),
        b'{"query": "{ a \xff }"}',
    ],
)
def test_json_that_is_not_plain_utf8_is_refused(body: bytes) -> None:
    refused("POST", "", "application/json", body)


@pytest.mark.parametrize(
    "query_string", ["query=%7Ba%7D?x", "query=%7Bd%7D%23?%0Aquery%20Q%7Ba%7D"]
)
def test_a_raw_question_mark_in_the_query_string_is_refused(query_string: str) -> None:
    # express-graphql and graphql-http read only up to a second '?'.
    assert "'?'" in refused("GET", query_string, None, b"")


def test_unknown_type_that_is_no_graphql_request_says_what_is_accepted() -> None:
    for body in (b"", b"hello", b"a=1&b=2", b"variables=%7B%7D", b"\x00\x01"):
        message = refused("POST", "", "text/plain", body)
        assert "application/json" in message and "application/graphql" in message


# Properties


@dataclass
class Op:
    type: str
    name: str | None
    text: str
    fields: tuple[str, ...]


NOISE = [
    "",
    " # mutation { deleteDevice }\n",
    ' # query Q { a } "\n',
    ",",
    "\n\t",
]
FIELD_NAMES = ["a", "b", "deleteDevice", "mutation", "query", "subscription", "fragment", "on"]
ARGUMENTS = [
    "",
    '(note: "mutation { x }")',
    '(note: """\nmutation B {\n  y } \\""" """)',
    '(id: 1, when: $when, tags: ["query", {k: "}"}])',
]
OPERATION_NAMES = ["A", "Bee", "mutation", "query", "subscription", "on", "fragment"]
FRAGMENT_NAMES = ["F", "G", "mutation", "query"]


def draw_fragments(draw: st.DrawFn) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Fragment definitions and the root fields each one gives, spreads resolved."""
    names = draw(st.lists(st.sampled_from(FRAGMENT_NAMES), max_size=3, unique=True))
    texts: list[str] = []
    fields: dict[str, tuple[str, ...]] = {}
    for index in reversed(range(len(names))):  # a fragment spreads later ones only: no cycle
        own = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=2))
        spreads = draw(st.lists(st.sampled_from(names[index + 1 :] or [""]), max_size=2))
        spreads = [spread for spread in spreads if spread]
        fields[names[index]] = tuple(own) + sum((fields[spread] for spread in spreads), ())
        selection = " ".join(own + [f"...{spread}" for spread in spreads])
        texts.append(f"fragment {names[index]} on Query {{ {selection} }}")
    return texts, fields


def draw_operation(draw: st.DrawFn, name: str | None, fragments: dict[str, tuple[str, ...]]) -> Op:
    noise = st.sampled_from(NOISE)
    kind = draw(st.sampled_from(["query", "mutation", "subscription"]))
    parts: list[str] = []
    fields: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.integers(0, 2))
        if choice == 1 and fragments:
            spread = draw(st.sampled_from(sorted(fragments)))
            parts.append(f"...{spread}{draw(st.sampled_from(['', ' @skip(if: true)']))}")
            fields += fragments[spread]
        elif choice == 2:
            field = draw(st.sampled_from(FIELD_NAMES))
            parts.append(f"... on Query {{ {field} }}")
            fields.append(field)
        else:
            field = draw(st.sampled_from(FIELD_NAMES))
            alias = draw(st.sampled_from(["", "x: ", "deleteDevice: ", "mutation:"]))
            parts.append(f"{alias}{field}{draw(st.sampled_from(ARGUMENTS))}{draw(noise)}")
            fields.append(field)
    shorthand = kind == "query" and name is None and draw(st.booleans())
    header = "" if shorthand else f"{kind} {name or ''}($when: String) "
    text = draw(noise) + header + draw(noise) + "{ " + " ".join(parts) + " }"
    return Op(kind, name, text, tuple(dict.fromkeys(fields)))


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[Op]]:
    """1-3 operations and 0-3 fragments in any order, with the operations in document order."""
    fragment_texts, fragments = draw_fragments(draw)
    count = draw(st.integers(1, 3))
    names = draw(
        st.lists(st.sampled_from(OPERATION_NAMES), min_size=count, max_size=count, unique=True)
    )
    operations = [
        draw_operation(draw, name if draw(st.booleans()) else None, fragments) for name in names
    ]
    texts = [op.text for op in operations] + fragment_texts
    order = draw(st.permutations(range(len(texts))))
    document = draw(st.sampled_from(NOISE)).join(texts[i] for i in order)
    return document, [operations[i] for i in order if i < count]


@settings(max_examples=120, deadline=None)
@given(documents(), st.data())
def test_the_chosen_operation_is_graphql_cores(
    generated: tuple[str, list[Op]], data: st.DataObject
) -> None:
    document, operations = generated
    names = [op.name for op in operations if op.name]
    name = data.draw(st.sampled_from([*names, None, "Unknown", ""]))
    parsed = parse(document)
    chosen = get_operation_ast(parsed, name)
    try:
        result = post_json({"query": document, "operationName": name})
    except BadGraphQL:
        assert chosen is None
        return
    assert chosen is not None
    definitions = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    op = operations[next(i for i, d in enumerate(definitions) if d is chosen)]
    assert result == [Operation(chosen.operation.value, op.name, op.fields)]
    assert op.type == chosen.operation.value


TOKENS = [
    "{",
    "}",
    "query",
    "mutation",
    "...",
    "F",
    "fragment",
    "on",
    "a",
    '"',
    "#",
    "\n",
    "(",
    ")",
    ":",
    "$x",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(["{ a }", "mutation { d }", "query A { a } query B { b }"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["query", "operationName", "extensions", "x"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.lists(st.sampled_from(TOKENS), max_size=30).map(lambda tokens: " ".join(tokens).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["GET", "HEAD", "POST", "POST", "PUT"]),
    st.one_of(st.text(max_size=60), st.builds(lambda t: "query=" + quote(t), st.text(max_size=60))),
    st.one_of(
        st.none(),
        st.sampled_from(
            ["application/json", "application/graphql", "text/plain", "multipart/form-data", ""]
        ),
        st.text(max_size=30),
    ),
    BODIES,
)
def test_any_input_gives_operations_or_bad_graphql(
    method: str, query_string: str, content_type: str | None, body: bytes
) -> None:
    try:
        result = graphql_operations(method, query_string, content_type, body)
    except BadGraphQL as error:
        message = str(error)
        assert message and message.isascii() and message.isprintable() and len(message) <= 200
    else:
        assert all(isinstance(operation, Operation) for operation in result)
        assert all(operation.type in ("query", "mutation", "subscription") for operation in result)
