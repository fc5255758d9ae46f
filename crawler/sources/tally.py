"""What the field pipeline saw in one run: missing and invalid fields, dropped records
(`FieldTally`), flushed into metrics after each page."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crawler.observability.metrics import Metrics

log = logging.getLogger("crawler.fields")

INVALID_EXAMPLES = 3


@dataclass
class FieldTally:
    """What the pipeline saw in one run: missing and invalid fields, dropped records.

    The pipeline flushes it into metrics after each page (`take()`), and logs the first dropped
    record of each required field once per run (`first_drop`).
    """

    missing: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    first_drop: dict[str, str] = field(default_factory=dict)  # field → example URL
    reported: set[str] = field(default_factory=set)  # fields already logged this run
    # A few of the values that did not convert, per field (`crawler preview` shows them).
    invalid_examples: dict[str, list[str]] = field(default_factory=dict)

    def invalid_value(self, name: str, value: Any) -> None:
        """Count a value of field `name` that did not convert; keep the first few, clipped."""
        self.invalid[name] += 1
        examples = self.invalid_examples.setdefault(name, [])
        if len(examples) < INVALID_EXAMPLES:
            text = repr(value)
            examples.append(text if len(text) <= 60 else text[:59] + "…")

    def flush(self, metrics: Metrics, source: str) -> None:
        """Add the counts since the last flush to the metrics; log each required field's first
        drop of the run (WARNING, with an example URL)."""
        for name, n in self.missing.items():
            metrics.fields_missing.labels(source, name).inc(n)
        for name, n in self.invalid.items():
            metrics.fields_invalid.labels(source, name).inc(n)
        if self.dropped:
            metrics.records_dropped.labels(source, "missing_required").inc(self.dropped)
        for name, url in self.first_drop.items():
            if name not in self.reported:
                self.reported.add(name)
                log.warning(
                    "record dropped: a required field is missing (logged once per run and field)",
                    extra={"source": source, "field": name, "url": url},
                )
        self.missing, self.invalid, self.dropped = Counter(), Counter(), 0
