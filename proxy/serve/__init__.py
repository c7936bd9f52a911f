"""Serving: the request path and the server around it.

Owns everything between a client's socket and the upstream client: aiohttp's protocol as the
proxy needs it, admission and tokens, the clients and their keys, the policy gate, the outgoing
request (headers, body, signature), retries and local limits, coalescing, forwarding and the
answer, the proxy's own endpoints and error answers, WebSocket pass-through, the upstream
pools, listeners (or systemd's sockets), workers and shutdown.

May import: proxy.errors, proxy.signing, proxy.client, proxy.policy, proxy.ops, proxy.keys,
proxy.config.
"""
