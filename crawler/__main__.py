"""`python -m crawler`: the same command line as the `crawler` script."""

from __future__ import annotations

from crawler.cli import main

raise SystemExit(main())
