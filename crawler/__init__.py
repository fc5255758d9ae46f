"""A 24/7 crawler for small machines, observable first."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# frozenlist (aiohttp's signal lists) in its pure-Python form: its compiled module costs
# ~1.1 MiB of RSS at import (bench/rss_imports.py, issue 13) for lists the crawler freezes once
# and walks a few times per /metrics request. Set before anything imports aiohttp; a value the
# environment already has is kept.
os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")
