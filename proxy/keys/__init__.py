"""Keys: the access key and everything that reads, writes or renews it.

Owns the credentials file (reading, its profiles, writing one profile atomically), the account
page's downloads, small-file I/O, the environment variables, reloading a key that changed on
disk, and the ``import`` and ``configure`` commands that store a key. It knows nothing of the
options, the config file or the request path: those hand it a path and a profile name.

May import: proxy.errors.
"""
