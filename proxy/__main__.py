"""``python -m proxy``: the same as the ``remoteit-proxy`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
