"""What one source run did (`RunResult`): its status, pages, records and errors, filled in by the
walk and the pipeline and read by the command line, the metrics and `crawler_jobs`."""

from __future__ import annotations

from dataclasses import dataclass, field

from crawler.record import Written
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
    # What the store made of the records written directly to it (see crawler.record.Written):
    # keys new and changed; `records_spooled` went to the spool instead, so are counted as
    # neither (draining them later does not come back to this run).
    records_new: int = 0
    records_changed: int = 0
    records_spooled: int = 0
    error: str | None = None
    error_kind: str | None = None
    errors: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    fields: FieldTally = field(default_factory=FieldTally)  # missing fields, dropped records

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def count(self, written: Written) -> None:
        """Add what the sink made of one batch."""
        self.records_new += written.new
        self.records_changed += written.changed
        self.records_spooled += written.spooled
