"""The HTTP state's per-URL stamp and next page: written only when needed, pruned when old."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from crawler.fetch import httpstate
from crawler.fetch.httpstate import PRUNE_AFTER, STAMP_EVERY, HttpState, Validators, revalidate


async def test_stamp_is_rewritten_at_most_daily_unless_asked(tmp_path: Path) -> None:
    state = HttpState(tmp_path / "s.sqlite")
    await state.open()
    now = time.time()
    v = Validators(etag='"a"', body_hash=b"h" * 16, fetched_at=now, next_url="http://h/2")
    state.put("s", "u", None, v)
    await state.flush()
    assert state.writes == 1 and await state.get("s", "u") == v
    later = Validators(etag='"a"', body_hash=b"h" * 16, fetched_at=now + 60, next_url="http://h/2")
    state.put("s", "u", v, later)  # only the stamp moved, by less than STAMP_EVERY
    await state.flush()
    assert state.writes == 1
    state.put("s", "u", v, later, stamp_every=0)  # refresh_after/changed_only: exact stamps
    await state.flush()
    assert state.writes == 2
    next_day = Validators(
        etag='"a"', body_hash=b"h" * 16, fetched_at=now + 60 + STAMP_EVERY, next_url="http://h/2"
    )
    state.put("s", "u", later, next_day)
    await state.flush()
    assert state.writes == 3
    await state.close()


async def test_rows_not_stamped_for_30_days_are_pruned_in_batches(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(httpstate, "PRUNE_BATCH", 7)
    path = tmp_path / "s.sqlite"
    state = HttpState(path)
    await state.open()
    old = time.time() - PRUNE_AFTER - 60
    for i in range(20):
        state.put("s", f"old/{i}", None, Validators(etag="x", fetched_at=old))
    state.put("s", "fresh", None, Validators(etag="x", fetched_at=time.time()))
    await state.close()
    again = HttpState(path)
    await again.open()  # prunes at start-up
    assert again.pruned == 20
    assert await again.get("s", "old/3") is None
    assert (await again.get("s", "fresh")) is not None
    await again.close()


async def test_rows_from_before_the_stamp_count_as_fetched_at_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(httpstate.MIGRATIONS[0] + "PRAGMA user_version=1;")
    conn.execute("INSERT INTO http_state VALUES ('s', 'u', 'e', NULL, NULL)")
    conn.commit()
    conn.close()
    state = HttpState(path)
    await state.open()
    got = await state.get("s", "u")
    assert got is not None and got.etag == "e" and got.next_url is None
    assert got.fetched_at is not None and abs(got.fetched_at - time.time()) < 120
    await state.close()


def test_a_304_keeps_the_stamp_and_next_page_and_a_full_fetch_is_never_unchanged() -> None:
    old = Validators(etag='"a"', body_hash=b"h", fetched_at=5.0, next_url="http://h/2")
    change = revalidate(old, 304, '"b"', None, b"")
    assert change is not None and change.new == Validators(
        etag='"b"', body_hash=b"h", fetched_at=5.0, next_url="http://h/2"
    )
    same = revalidate(Validators(body_hash=change.new.body_hash), 200, None, None, b"body")
    assert same is not None
    digest = same.new.body_hash
    assert revalidate(Validators(body_hash=digest), 200, None, None, b"body").unchanged  # type: ignore[union-attr]
    full = revalidate(Validators(body_hash=digest), 200, None, None, b"body", conditional=False)
    assert full is not None and not full.unchanged and full.new.body_hash == digest
