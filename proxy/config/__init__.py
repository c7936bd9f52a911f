"""Configuration: what the user asked for, read from every source and checked once.

Owns the option table and its precedence (command line > environment > config file >
defaults), the resolved and frozen ``Settings``, the config file's ``[proxy]``,
``[client.NAME]`` and ``[upstream.NAME]`` sections, option values, listen and upstream
addresses, and the command line's grammar (``cli.py`` runs the parser; this package defines it).

May import: proxy.errors, proxy.signing, proxy.policy, proxy.ops, proxy.keys.
"""
