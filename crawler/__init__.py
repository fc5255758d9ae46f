"""A 24/7 crawler for small machines, observable first."""

from __future__ import annotations

__version__ = "0.1.0"
