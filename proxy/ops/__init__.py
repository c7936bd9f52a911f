"""Operations: what the proxy tells the people who run it, and the clock it keeps.

Owns logging (text or JSON lines, the access line), the Prometheus metrics, the estimate of
this machine's clock offset from the upstream's ``Date``, and what the service manager is told
(``notify``: systemd's ready, reloading, stopping, watchdog). Nothing here knows how a request
is served or where the key comes from.

May import: proxy.errors, proxy.policy.
"""
