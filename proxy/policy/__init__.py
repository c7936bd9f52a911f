"""Policy: pure decisions about a request, with no I/O and no state of the proxy.

Owns the least-privilege rules (``rules``: what a client may do, the decision for one request)
the reading of GraphQL documents into the operations the upstream would run (``graphql``,
with graphql-core), when and how long to wait before sending a request again (``retry``) and
the token bucket of a rate limit (``bucket``, the clock passed in). The request path applies
these decisions; this package only makes them.

May import: proxy.errors.
"""
