#!/usr/bin/env bash
# Side-by-side benchmark, everything in this folder: `crawler once` storing into a real
# PostgreSQL, next to the floor (bench/floor.py: bare aiohttp + parsel, no storage) and the
# peer (bench/scrapy_peer.py: Scrapy, no storage), all crawling bench/site.py on 127.0.0.1.
#
# Usage: bench/run.sh [PAGES] [REPEATS]     (defaults: 1000 pages x 20 records, 3 repeats)
# Run it after the README's test command (scripts/test), which builds .venv and installs
# PostgreSQL; the first run also creates .venv-bench for Scrapy (bench/requirements-peers.txt).
#
# Each run is measured as a whole process by /usr/bin/time (user+sys CPU, peak RSS). Prints
# every run, then a table of medians with the CPU ratio to the floor. Machines are noisy:
# compare ratios within one invocation, not figures across machines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
pages=${1:-1000}; reps=${2:-3}
py=$repo/.venv/bin/python
peers=${BENCH_VENV:-$repo/.venv-bench}
for need in "$py" /usr/bin/time; do
  [ -x "$need" ] || { echo "bench/run.sh: $need is missing (run scripts/test first; /usr/bin/time is Debian's package 'time')" >&2; exit 2; }
done
if [ ! -x "$peers/bin/scrapy" ]; then
  echo "creating $peers for Scrapy (once)" >&2
  python3 -m venv "$peers"
  "$peers/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-peers.txt"
fi

# A port free a moment ago (several people may run the benchmark on one machine).
port=${BENCH_PORT:-$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
work=$(mktemp -d "${TMPDIR:-/tmp}/crawler-bench.XXXXXX")
site_pid=""
cleanup() {
  [ -n "$site_pid" ] && kill "$site_pid" 2>/dev/null
  [ -f "$work/pg.pickle" ] && "$py" "$here/pg.py" stop "$work"
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway PostgreSQL cluster (the tests' helper; it runs as `postgres` when we are root).
dsn=$("$py" "$here/pg.py" start "$work")
"$py" "$here/site.py" --port "$port" --pages "$pages" & site_pid=$!
"$py" - "http://127.0.0.1:$port/page/0" <<'PY' || { echo "bench/run.sh: the site did not start" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(200):  # the site builds its pages first: up to 20 s
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).read()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(1)
PY

cat > "$work/bench.yaml" <<YAML
instance: bench
log_level: INFO
state_dir: $work/var
storage: {dsn: "$dsn"}
# Every repeat does the whole work: no robots.txt (the site has none), no conditional GET.
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
      # The field pipeline at work: a regex + a type, and a type on a list (issue 12).
      n: {selector: span.text::text, regex: '^#\d+\.(\d+)', type: int}
      tag_links: {selector: a.tag::attr(href), all: true, type: url}
    key: [text, author]
YAML

# measure NAME COMMAND…: one line per repeat into $work/runs.tsv (name, user s, sys s, peak KiB,
# the records the command said it extracted).
measure() {
  local name=$1; shift
  for r in $(seq "$reps"); do
    if ! /usr/bin/time -f "%U %S %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err"; then
      echo "$name: run $r failed:" >&2; tail -5 "$work/err" >&2; exit 1
    fi
    read -r user sys kib < <(tail -1 "$work/time")
    records=$(awk '$1 == "records" {print $2}' "$work/out")
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$user" "$sys" "$kib" "${records:--}" >> "$work/runs.tsv"
    printf '%-10s run %s: user %ss sys %ss, peak RSS %s KiB\n' "$name" "$r" "$user" "$sys" "$kib" >&2
  done
}
: > "$work/runs.tsv"
measure floor "$py" "$here/floor.py" "$pages" "$port"
measure scrapy "$peers/bin/python" "$here/scrapy_peer.py" "$pages" "$port"
# Each repeat stores into the same database: the first inserts, the others update last_seen.
measure pi-crawler "$repo/.venv/bin/crawler" once -c "$work/bench.yaml"
BENCH_SCRAPY_VERSION=$("$peers/bin/python" -c 'import scrapy; print(scrapy.__version__)') \
  "$py" "$here/report.py" "$work/runs.tsv" "$pages" "$dsn"
