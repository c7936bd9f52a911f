"""The fake account API as a process: ``python tests/fake_api.py PORT KEY_ID SECRET_B64``.

For trying the commands by hand (and for the closing demonstrations): a verifying upstream
with the key-management API, on 127.0.0.1 only; it prints its URL and serves until killed.
"""

from __future__ import annotations

import asyncio
import base64
import sys

from aiohttp import web
from fake_account import AccountUpstream, FakeAccount


async def main(port: int, key_id: str, secret_b64: str) -> None:
    upstream = AccountUpstream(keys={key_id: base64.b64decode(secret_b64)})
    account = FakeAccount(upstream)
    runner = web.AppRunner(upstream.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"fake API on http://127.0.0.1:{port} for {account.email}", flush=True)
    while True:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
