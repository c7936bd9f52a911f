"""A TCP relay that delays each direction: a network round trip, emulated on loopback.

Every chunk read from one side is written to the other ``--delay-ms`` later (10 ms each way:
a 20 ms round trip), in order, without limiting the bandwidth. A new connection also waits
one round trip (``--connect-delay-ms``, twice the delay by default) before its first bytes
go on, as a TCP handshake over such a path would take. bench.py puts it in front of the TLS
upstream for its user-workload table; the bytes are passed through unchanged, so clients
still speak TLS to the upstream itself.

    python benchmarks/delay_relay.py --listen 127.0.0.1:9443 --upstream 127.0.0.1:8443
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

READ_SIZE = 65536


async def send(queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
    """Write each chunk when it is due; an empty chunk is the end of the stream."""
    loop = asyncio.get_running_loop()
    while True:
        due, data = await queue.get()
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if not data:
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(data)
        await writer.drain()


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    sender = asyncio.create_task(send(queue, writer))
    try:
        while data := await reader.read(READ_SIZE):
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((loop.time() + delay, b""))
        await sender


async def relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream: tuple[str, int],
    delay: float,
    connect_delay: float,
) -> None:
    """One connection: wait out the emulated handshake, then both directions until both end."""
    try:
        await asyncio.sleep(connect_delay)
        up_reader, up_writer = await asyncio.open_connection(*upstream)
    except OSError:
        client_writer.transport.abort()
        return
    tasks = [
        asyncio.create_task(pump(client_reader, up_writer, delay)),
        asyncio.create_task(pump(up_reader, client_writer, delay)),
    ]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    if any(not task.cancelled() and task.exception() is not None for task in done):
        for writer in (client_writer, up_writer):  # a reset on one side resets the other
            writer.transport.abort()
    for task in tasks:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await task
    for writer in (client_writer, up_writer):
        writer.close()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT to listen on")
    parser.add_argument("--upstream", type=address, required=True, help="HOST:PORT to relay to")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="each way (default 10)")
    parser.add_argument(
        "--connect-delay-ms", type=float, help="before a new connection's first bytes (2x delay)"
    )
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    connect_delay = 2 * delay if args.connect_delay_ms is None else args.connect_delay_ms / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await relay(reader, writer, args.upstream, delay, connect_delay)

    server = await asyncio.start_server(handle, *args.listen, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
