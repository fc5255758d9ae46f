"""What one source run did (`RunResult`): its status, pages, records and errors, filled in by the
walk and the pipeline and read by the command line, the metrics and `crawler_jobs`."""

from __future__ import annotations

from dataclasses import dataclass, field

from crawler.sources.tally import FieldTally


@dataclass
class RunResult:
    """What one source run did."""

    source: str
    status: str = "success"
    pages: int = 0
    not_modified: int = 0
    failed_pages: int = 0
    records: int = 0
    error: str | None = None
    error_kind: str | None = None
    errors: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    fields: FieldTally = field(default_factory=FieldTally)  # missing fields, dropped records

    @property
    def ok(self) -> bool:
        return self.status == "success"
