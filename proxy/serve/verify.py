"""Asking the API whether it accepts a key, before a reloaded key is used for requests."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import UpstreamError
from .signed import graphql_post

if TYPE_CHECKING:
    from ..keys.credentials import Credentials
    from .state import ProxyState

LOGIN = b'{"query":"{ login { email } }"}'

Verify = Callable[["Credentials"], Coroutine[Any, Any, "bool | None"]]


def verifier(state: ProxyState) -> Verify:
    """A check for the watcher: True when the API answers a login signed with the key, False
    when it refuses it (401/403), None when it cannot tell (unreachable, another answer)."""

    async def verify(creds: Credentials) -> bool | None:
        pool, settings = state.pool, state.settings
        if pool is None:
            return None
        target, lines = graphql_post(settings, creds, LOGIN, state.skew.now())
        try:
            async with await pool.request("POST", target, lines, LOGIN) as answer:
                while await answer.read():
                    pass
        except UpstreamError:
            return None
        status = answer.head.status
        return False if status in (401, 403) else True if status == 200 else None

    return verify
