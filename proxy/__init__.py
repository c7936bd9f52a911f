"""remoteit-proxy: a local proxy that signs requests to the Remote.It API.

The package is layered, and imports only go down the list below: a module imports from its own
package or from the ones under it, never from one above (``tests/test_structure.py`` checks
this, and that no import forms a cycle). Each sub-package's docstring says what it owns and
exactly which others it may import.

- ``cli.py`` (and ``__main__.py``): the entry point: runs the command line's parser, sets up
  logging, runs the command and turns errors into exit codes; nothing imports it.
- ``commands/``: ``check``, ``sign``, ``rotate``, ``exec`` and the account's API they call.
- ``serve/``: the request path and the server.
- ``config/``: the options, their precedence, the config file, the command line's grammar.
- ``keys/``: the access key: credentials files, profiles, downloads, reloads, import/configure.
- ``ops/``: logs, metrics, the clock.
- ``policy/`` and ``client/``: pure decisions about a request; the upstream HTTP/1.1 client.
- ``errors.py`` and ``signing.py``: the exception tree; request signing (pure, no I/O).
"""

from __future__ import annotations

__version__ = "0.1.0"
