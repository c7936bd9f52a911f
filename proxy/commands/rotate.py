"""The ``rotate`` command: a new access key through the API, the old one disabled."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..config.settings import Settings
from ..keys.rotation import Rotation
from .api import Account


async def rotate(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    grace: float,
    delete_old: bool,
    say: Callable[[str], None],
) -> str:
    """Rotate the key of ``settings.profile``; the new key's masked id."""
    async with Account(settings, environ) as api:
        rotation = Rotation(api, settings.credentials, settings.profile, environ, say)
        return await rotation.run(grace, delete_old)
