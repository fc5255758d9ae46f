"""Several crawlers on one PostgreSQL, measured: fairness, overlaps, lease load, take-over.

For each N (default 2, 5, 10): N `crawler run` processes with distinct instance names share
SOURCES sources (default 200, one page each, every INTERVAL) through the PostgreSQL leases,
crawling bench/site.py on 127.0.0.1 into one throwaway PostgreSQL. After a warm-up, over a steady
window it measures

- fairness: source runs per instance (min / max share; 1.00 is perfectly even),
- overlapping runs of one source on two instances (from crawler_jobs; must be 0),
- lease writes per second (inserts + updates + deletes on crawler_leases and crawler_instances)
  and transactions per second (pg_stat_database), and PostgreSQL's CPU (utime + stime of the
  server's processes from /proc, as a share of one core),

then SIGKILLs one crawler and measures the take-over: the time until every source it ran has
run on another instance. Prints a Markdown table (docs/scaling.md has one run's).

With `--slow HOLD` it measures the slow-database case instead: the crawlers reach PostgreSQL
through the test suite's outage proxy (tests/proxy.py), which, over the steady window, holds
each message of their record connections (application_name `crawler`) for HOLD seconds, so
every batch takes longer than `lease_ttl`, while their lease connections pass at once. It
counts overlapping runs from crawler_jobs (once the spooled runs have drained), the fairness
during the slowness and over a second window after it.

    .venv/bin/python bench/scale.py [--crawlers 2,5,10] [--sources 200] [--seconds 40]
    .venv/bin/python bench/scale.py --slow 1 --crawlers 2 --ttl 6

Run it after the README's test command. Bounded: about (warm-up + steady + take-over) per N,
under ten minutes for the defaults on two cores; loopback only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import psycopg  # noqa: E402

from tests.helpers import PostgresServer, free_port  # noqa: E402
from tests.proxy import Proxy  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def pg_cpu_seconds(pg: PostgresServer) -> float:
    """utime + stime of the postmaster and its children (the backends)."""
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    pids = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.add(int(entry.name))
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def lease_counters(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        writes = conn.execute(
            "select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables"
            " where relname in ('crawler_leases', 'crawler_instances')"
        ).fetchone()
        xacts = conn.execute(
            "select xact_commit + xact_rollback from pg_stat_database"
            " where datname = current_database()"
        ).fetchone()
    return int(writes[0]), int(xacts[0])  # type: ignore[index]


def config(
    work: Path, name: str, dsn: str, site: str, sources: int, interval: float, ttl: float
) -> Path:
    blocks = "".join(
        f"""\
  - name: s{i:03d}
    every: {interval}s
    urls: ["{site}/page/{i}"]
    items: div.quote
    fields: {{text: span.text::text}}
    key: [text]
"""
        for i in range(sources)
    )
    path = work / f"{name}.yaml"
    path.write_text(
        f"""\
instance: {name}
state_dir: {work}/{name}
log_level: WARNING
lease_ttl: {ttl}s
metrics: {{listen: "127.0.0.1:{free_port()}"}}
storage: {{dsn: "{dsn}"}}
fetch: {{politeness_delay: 0s, robots: false, conditional_get: false, per_host_concurrency: 16}}
sources:
{blocks}"""
    )
    return path


def runs(dsn: str, since: float) -> list[tuple[str, str, float, float]]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass('crawler_jobs')").fetchone() == (None,):
            return []  # no crawler has started far enough to migrate the database
        return conn.execute(
            "select source, instance, extract(epoch from started_at)::float8,"
            " extract(epoch from finished_at)::float8 from crawler_jobs"
            " where finished_at > to_timestamp(%s) order by started_at",
            [since],
        ).fetchall()


def overlaps(rows: list[tuple[str, str, float, float]]) -> int:
    by_source: dict[str, list[tuple[float, float, str]]] = {}
    for source, instance, start, end in rows:
        by_source.setdefault(source, []).append((start, end, instance))
    count = 0
    for spans in by_source.values():
        spans.sort()
        for (_s1, e1, i1), (s2, _e2, i2) in itertools.pairwise(spans):
            if i1 != i2 and s2 < e1:
                count += 1
    return count


def fairness(rows: list[tuple[str, str, float, float]], instances: list[str]) -> str:
    """min / max share of the runs per instance."""
    per_instance = dict.fromkeys(instances, 0)
    for _source, instance, _s, _e in rows:
        per_instance[instance] = per_instance.get(instance, 0) + 1
    counts = sorted(per_instance.values())
    total = sum(counts) or 1
    return f"{counts[0] / total:.3f} / {counts[-1] / total:.3f} (even {1 / len(instances):.3f})"


def start_crawlers(
    n: int, args: argparse.Namespace, site: str, work: Path, dsn: str
) -> tuple[list[str], list[subprocess.Popen[bytes]]]:
    names = [f"pi-{i:02d}" for i in range(n)]
    procs = []
    for name in names:
        cfg = config(work, f"n{n}-{name}", dsn, site, args.sources, args.interval, args.ttl)
        log = (work / f"n{n}-{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "crawler", "run", "-c", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return [f"n{n}-{name}" for name in names], procs


def stop_crawlers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def slow_phase(n: int, args: argparse.Namespace, site: str, work: Path) -> dict[str, str]:
    """The slow-database case: record connections held `args.slow` s per message."""
    pg = PostgresServer()
    pg.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dsn = pg.create_database()
        with Proxy(pg.port) as proxy:
            instances, procs = start_crawlers(n, args, site, work, proxy.dsn(dsn))
            time.sleep(args.warmup)
            t0 = time.time()
            proxy.slow("crawler", args.slow)
            time.sleep(args.seconds)
            proxy.slow("crawler", 0)
            t1 = time.time()
            time.sleep(args.warmup)  # the spooled runs drain, the shares settle
            t2 = time.time()
            time.sleep(args.seconds)
            t3 = time.time()
            stop_crawlers(procs)
        during = [r for r in runs(dsn, t0) if r[2] >= t0 and r[3] <= t1]
        after = [r for r in runs(dsn, t2) if r[2] >= t2 and r[3] <= t3]
        lapses = sum(
            (work / f"{name}.log").read_text(errors="replace").count("leases lapsed")
            for name in instances
        )
        return {
            "crawlers": str(n),
            "record connection held": f"{args.slow:g} s per message",
            "source runs/s while slow": f"{len(during) / (t1 - t0):.1f}",
            "fairness while slow": fairness(during, instances),
            "overlapping runs": str(overlaps(runs(dsn, t0 - args.warmup))),
            "lease lapses": str(lapses),
            "fairness after": fairness(after, instances),
        }
    finally:
        stop_crawlers(procs)
        pg.destroy()


def phase(n: int, args: argparse.Namespace, site: str, work: Path) -> dict[str, str]:
    pg = PostgresServer()
    pg.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dsn = pg.create_database()
        instances, procs = start_crawlers(n, args, site, work, dsn)
        time.sleep(args.warmup)
        t0, cpu0, (w0, x0) = time.time(), pg_cpu_seconds(pg), lease_counters(dsn)
        time.sleep(args.seconds)
        t1, cpu1, (w1, x1) = time.time(), pg_cpu_seconds(pg), lease_counters(dsn)
        steady = runs(dsn, t0)
        victim = instances[0]
        if not steady:
            tail = (work / f"{victim}.log").read_text(errors="replace")[-2000:]
            print(f"no source ran in the steady window; a crawler's log:\n{tail}", file=sys.stderr)
        # Take-over: kill the first crawler; time until each of its sources ran elsewhere.
        victim_sources = {r[0] for r in steady if r[1] == victim and r[3] > t1 - 2 * args.interval}
        killed = time.time()
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        takeover = float("nan")
        deadline = killed + 4 * args.ttl + 3 * args.interval
        while time.time() < deadline:
            after = runs(dsn, killed)
            moved = {r[0] for r in after if r[1] != victim and r[2] > killed}
            if victim_sources and victim_sources <= moved:
                takeover = (
                    max(
                        min(r[2] for r in after if r[0] == s and r[1] != victim and r[2] > killed)
                        for s in victim_sources
                    )
                    - killed
                )
                break
            time.sleep(0.2)
        all_rows = runs(dsn, t0 - args.warmup)
        return {
            "crawlers": str(n),
            "source runs/s": f"{len(steady) / (t1 - t0):.1f}",
            "fairness (min/max share)": fairness(steady, instances),
            "overlapping runs": str(overlaps(all_rows)),
            "lease writes/s": f"{(w1 - w0) / (t1 - t0):.1f}",
            "transactions/s": f"{(x1 - x0) / (t1 - t0):.1f}",
            "PostgreSQL CPU": f"{100 * (cpu1 - cpu0) / (t1 - t0):.1f} %",
            "take-over after SIGKILL": f"{takeover:.1f} s ({len(victim_sources)} sources)",
        }
    finally:
        stop_crawlers(procs)
        pg.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crawlers", default="2,5,10", help="comma-separated instance counts")
    ap.add_argument("--sources", type=int, default=200)
    ap.add_argument("--interval", type=float, default=10.0, help="each source's `every`, seconds")
    ap.add_argument("--ttl", type=float, default=15.0, help="lease_ttl, seconds")
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=40.0, help="the steady window")
    ap.add_argument(
        "--slow",
        type=float,
        default=0.0,
        help="the slow-database case: hold each record-connection message this many seconds",
    )
    args = ap.parse_args()
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    site_proc = subprocess.Popen(
        [sys.executable, str(HERE / "site.py"), "--port", str(port), "--pages", str(args.sources)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        wait_http(f"{site}/page/0")
        with tempfile.TemporaryDirectory(prefix="crawler-scale-") as tmp:
            for n in (int(x) for x in args.crawlers.split(",")):
                print(f"{n} crawlers ...", file=sys.stderr, flush=True)
                measure = slow_phase if args.slow else phase
                rows.append(measure(n, args, site, Path(tmp)))
    finally:
        site_proc.terminate()
        site_proc.wait()
    print(
        f"\n{args.sources} sources, every {args.interval:g} s, lease_ttl {args.ttl:g} s, "
        f"steady window {args.seconds:g} s after {args.warmup:g} s of warm-up\n"
    )
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
