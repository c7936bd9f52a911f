"""Commands: what ``cli.py`` runs besides serving, each one a short program over the layers.

Owns ``check`` and ``sign`` (one signed request, or its headers), the account's API as the
commands call it (GraphQL signed with a given key: the developer key, access keys), ``rotate``
and ``exec``. ``import`` and ``configure`` live in ``proxy.keys.onboard``: they only store a key.

May import: proxy.errors, proxy.signing, proxy.client, proxy.policy, proxy.ops, proxy.keys,
proxy.config, proxy.serve.
"""
