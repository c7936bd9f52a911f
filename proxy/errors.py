"""The project's exception tree: every error a user can act on derives from ProxyError."""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error raised on purpose by remoteit-proxy.

    Messages are written for the person running the proxy: they name the file, profile, option
    or value at fault and say how to fix it. They never contain a secret.
    """


class ConfigError(ProxyError):
    """The configuration (command line, environment or config file) is unusable."""


class CredentialsError(ConfigError):
    """The credentials (file or environment) are missing or malformed."""


class ListenError(ConfigError):
    """The proxy cannot listen where it was told to (address in use, permission denied...)."""


class UpstreamError(ProxyError):
    """The upstream could not be reached or did not answer in time.

    Carries the HTTP status and the stable error code the proxy answers its client with.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
