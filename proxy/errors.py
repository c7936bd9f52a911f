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
    """The upstream could not be reached, did not answer in time, or broke the exchange.

    Each subclass carries the HTTP status and the stable error code the proxy answers its
    client with; callers decide by the type (a retry, a log level), never by the code.
    """

    status = 502
    code = "upstream_error"
    # Set by the pool: whether the connection was open, and whether any byte of an answer had
    # arrived, when it failed. Before any byte, a safe request may be sent again.
    connected = False
    answered = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamUnreachable(UpstreamError):
    """No connection could be opened: name lookup, TCP, or the outbound proxy failed."""

    code = "upstream_unreachable"


class UpstreamTLSError(UpstreamError):
    """The upstream's TLS certificate could not be verified."""

    code = "upstream_tls_error"


class UpstreamTimeout(UpstreamError):
    """Connecting, or a wait for the upstream to answer or take the body, took too long."""

    status = 504
    code = "upstream_timeout"


class UpstreamClosed(UpstreamError):
    """The connection closed or was reset before the answer was complete."""


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something that is not well-formed HTTP/1.1 (the connection is
    closed: where one answer ends is no longer known)."""


class RequestHeadError(ProxyError, ValueError):
    """A request header line cannot be written as given (a CR or LF inside a value)."""


class AccountError(ProxyError):
    """The API answered a call about the account (its keys, its developer key) with an error,
    or could not be reached for it; ``message`` says which call and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
