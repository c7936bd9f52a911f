"""Sequential small GraphQL calls on one kept-alive connection, with the standard library.

bench.py's user workload runs it for two rows: through remoteit-proxy (plain http to the
proxy, which signs) and direct to the TLS upstream behind the delaying relay (the physical
floor: no proxy and no signing). Each answer must be a 200 with a body; it prints how many
calls were answered and exits 1 at the first that was not.

    python benchmarks/workload_client.py http://127.0.0.1:8181/graphql/v1 --calls 100
    python benchmarks/workload_client.py https://localhost:9443/graphql/v1 --cafile ca.pem
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys
from urllib.parse import urlsplit

BODY = b'{"query":"{ login { email } }"}'


def connection(url: str, cafile: str | None) -> http.client.HTTPConnection:
    """One connection to the URL's host, kept alive for every call."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        return http.client.HTTPSConnection(host, port, timeout=30, context=context)
    return http.client.HTTPConnection(host, port, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http(s)://HOST:PORT/graphql/v1")
    parser.add_argument("--calls", type=int, default=100, help="how many calls (default 100)")
    parser.add_argument("--cafile", help="CA certificate to verify an https server with")
    args = parser.parse_args()
    target = urlsplit(args.url).path or "/"
    conn = connection(args.url, args.cafile)
    headers = {"Content-Type": "application/json"}
    try:
        for call in range(args.calls):
            conn.request("POST", target, body=BODY, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                print(f"call {call + 1}: {response.status} {body[:200]!r}", file=sys.stderr)
                return 1
            sys.stdout.buffer.write(body + b"\n")
    finally:
        conn.close()
    print(f"answered: {args.calls}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
