#!/usr/bin/env bash
# Side-by-side benchmark: `crawler once` storing into a real PostgreSQL, next to the floor
# (bare aiohttp + parsel) and Scrapy, all crawling ../shared/bench/site.py on 127.0.0.1.
# Usage: bench/run.sh [PAGES] [REPEATS]    (defaults 1000 pages, 3 repeats)
# Prints CPU seconds per 1,000 pages and peak RSS per run (from ../shared/bench/measure.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
shared=${SHARED_BENCH:-$repo/../shared/bench}
pages=${1:-1000}; reps=${2:-3}; port=${BENCH_PORT:-8765}
work=$(mktemp -d /tmp/crawler-bench.XXXXXX)
cleanup() { [ -n "${pg_pid_file:-}" ] && "$repo/.venv/bin/python" -c "$stop_pg" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# A throwaway PostgreSQL (the same helper the tests use; runs as `postgres` when we are root).
read -r dsn < <("$repo/.venv/bin/python" - "$work" <<'PY'
import pickle, sys
sys.path.insert(0, ".")
from tests.helpers import PostgresServer
s = PostgresServer(); s.start()
pickle.dump(s, open(sys.argv[1] + "/pg.pickle", "wb"))
print(s.create_database())
PY
)
pg_pid_file=$work/pg.pickle
stop_pg="import pickle; pickle.load(open('$work/pg.pickle','rb')).destroy()"
cat > "$work/bench.yaml" <<YAML
instance: bench
log_level: INFO
state_dir: $work/var
storage: {dsn: "$dsn"}
# Every repeat does the full work: no robots.txt (the site has none), no conditional GET.
fetch: {concurrency: 16, per_host_concurrency: 16, politeness_delay: 0s, robots: false, conditional_get: false}
sources:
  - name: quotes
    every: 1h
    urls: ["http://127.0.0.1:$port/page/{0..$((pages - 1))}"]
    items: div.quote
    fields:
      text: span.text::text
      author: small.author::text
      tags: {selector: a.tag::text, all: true}
    key: [text, author]
YAML
# Each repeat stores into the same database: the first inserts, the others update last_seen.
BENCH_PORT=$port bash "$shared/measure.sh" "$pages" "$reps" -- "$repo/.venv/bin/crawler" once -c "$work/bench.yaml"
"$repo/.venv/bin/python" -c "
import psycopg; c = psycopg.connect('$dsn')
print('rows in scraped_data:', c.execute('select count(*) from scraped_data').fetchone()[0],
      '| crawler_jobs:', c.execute(\"select count(*) filter (where status='success'), count(*) from crawler_jobs\").fetchone())"
