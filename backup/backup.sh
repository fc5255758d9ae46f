#!/usr/bin/env bash
# Daily PostgreSQL backups on the NAS: `pg_dump -Fc` of the crawler's database,
# kept as daily, weekly and monthly copies with retention, with the outcome as
# node_exporter textfile metrics. Runs in compose's `backup` service (the same
# postgres image as the server, so pg_dump matches the server's version) as a
# role that can only read. docs/backup.md has the restore procedure.
#
#   backup.sh          a backup now unless today's exists, then one a day at BACKUP_AT
#   backup.sh --once   one backup now, then exit (by hand, and in the tests)
#
# Environment: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq's own), PGPASSWORD_FILE
# (a file holding the password), BACKUP_DIR (/backups), BACKUP_AT (03:15, local
# time), KEEP_DAILY (7), KEEP_WEEKLY (4), KEEP_MONTHLY (6), METRICS_DIR (a
# node_exporter textfile directory; empty: no metrics), CONFIG_DIRS (folders of
# configuration to archive with each dump, e.g. the repository's config folders).
set -euo pipefail

BACKUP_DIR="${BACKUP_DIR:-/backups}"
BACKUP_AT="${BACKUP_AT:-03:15}"
KEEP_DAILY="${KEEP_DAILY:-7}"
KEEP_WEEKLY="${KEEP_WEEKLY:-4}"
KEEP_MONTHLY="${KEEP_MONTHLY:-6}"
METRICS_DIR="${METRICS_DIR:-}"
CONFIG_DIRS="${CONFIG_DIRS:-}"
NAME="${PGDATABASE:-crawler}"

log() { printf '%s backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

if [ -n "${PGPASSWORD_FILE:-}" ]; then
  PGPASSWORD="$(cat "$PGPASSWORD_FILE")"
  export PGPASSWORD
fi

# Names carry UTC timestamps (or ISO week / month), so glob order is age order.
shopt -s nullglob

# The newest N files of a glob stay, older ones go.
keep_newest() {
  local n=$1 pattern=$2 files i
  # shellcheck disable=SC2206 # the pattern is a glob on purpose
  files=($pattern)
  for ((i = 0; i < ${#files[@]} - n; i++)); do
    log "retention: removing ${files[i]}"
    rm -f -- "${files[i]}"
  done
}

metric() { printf '# HELP %s %s\n# TYPE %s gauge\n%s %s\n' "$1" "$2" "$1" "$1" "$3"; }

write_metrics() {
  [ -n "$METRICS_DIR" ] || return 0
  local file="$METRICS_DIR/crawler_backup.prom"
  {
    metric crawler_backup_last_success_timestamp_seconds \
      "When the last backup that pg_restore could read finished (0: none yet)." "$1"
    metric crawler_backup_last_size_bytes "Size of the last successful dump." "$2"
    metric crawler_backup_previous_size_bytes "Size of the successful dump before it (0: none)." "$3"
    metric crawler_backup_last_duration_seconds "How long the last successful dump took." "$4"
    metric crawler_backup_last_failure_timestamp_seconds "When a backup last failed (0: never)." "$5"
  } > "$file.tmp"
  mv "$file.tmp" "$file"
}

# What the newest dumps say, so a restarted service reports the truth.
state() {
  local dumps=("$BACKUP_DIR"/daily/"$NAME"-*.dump) n
  n=${#dumps[@]}
  LAST_TS=0 LAST_SIZE=0 PREV_SIZE=0
  if [ "$n" -ge 1 ]; then
    LAST_TS=$(stat -c %Y "${dumps[n - 1]}")
    LAST_SIZE=$(stat -c %s "${dumps[n - 1]}")
  fi
  if [ "$n" -ge 2 ]; then PREV_SIZE=$(stat -c %s "${dumps[n - 2]}"); fi
}

LAST_FAILURE=0
LAST_DURATION=0

backup_once() {
  mkdir -p "$BACKUP_DIR"/daily "$BACKUP_DIR"/weekly "$BACKUP_DIR"/monthly
  local stamp start tmp dump
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  start=$(date +%s)
  tmp="$BACKUP_DIR/.partial-$stamp.dump"
  dump="$BACKUP_DIR/daily/$NAME-$stamp.dump"
  log "dumping $NAME from ${PGHOST:-local}:${PGPORT:-5432} as ${PGUSER:-?}"
  # --no-owner/--no-privileges: the dump restores into any fresh server as
  # whichever role restores it. A dump only counts once pg_restore can list it.
  if ! pg_dump --format=custom --no-owner --no-privileges --file="$tmp" "$NAME" ||
     ! pg_restore --list "$tmp" > /dev/null; then
    rm -f -- "$tmp"
    LAST_FAILURE=$(date +%s)
    state
    write_metrics "$LAST_TS" "$LAST_SIZE" "$PREV_SIZE" "$LAST_DURATION" "$LAST_FAILURE"
    log "FAILED: no new backup (the last good one stays)"
    return 1
  fi
  mv -- "$tmp" "$dump"
  if [ -n "$CONFIG_DIRS" ]; then
    # shellcheck disable=SC2086 # a list of folders
    tar -czf "$BACKUP_DIR/daily/config-$stamp.tar.gz" --exclude='secrets' --exclude='.env' \
      --exclude='*.txt' $CONFIG_DIRS 2>/dev/null || log "config archive incomplete"
  fi
  # The first dump of each ISO week and of each month is kept longer (hard
  # links: no extra space while the daily copy still exists).
  local week month
  week="$BACKUP_DIR/weekly/$NAME-$(date -u +%G-W%V).dump"
  month="$BACKUP_DIR/monthly/$NAME-$(date -u +%Y-%m).dump"
  [ -e "$week" ] || ln -- "$dump" "$week"
  [ -e "$month" ] || ln -- "$dump" "$month"
  keep_newest "$KEEP_DAILY" "$BACKUP_DIR/daily/$NAME-*.dump"
  keep_newest "$KEEP_DAILY" "$BACKUP_DIR/daily/config-*.tar.gz"
  keep_newest "$KEEP_WEEKLY" "$BACKUP_DIR/weekly/$NAME-*.dump"
  keep_newest "$KEEP_MONTHLY" "$BACKUP_DIR/monthly/$NAME-*.dump"
  LAST_DURATION=$(($(date +%s) - start))
  state
  write_metrics "$LAST_TS" "$LAST_SIZE" "$PREV_SIZE" "$LAST_DURATION" "$LAST_FAILURE"
  log "ok: $dump ($LAST_SIZE bytes, ${LAST_DURATION}s)"
}

if [ "${1:-}" = "--once" ]; then
  backup_once
  exit $?
fi

state
write_metrics "$LAST_TS" "$LAST_SIZE" "$PREV_SIZE" 0 0
while true; do
  today=$(date +%Y-%m-%d)
  if [ "$LAST_TS" -eq 0 ] || [ "$(date -d "@$LAST_TS" +%Y-%m-%d)" != "$today" ]; then
    # A failed attempt is retried in an hour, not tomorrow.
    backup_once || { sleep 3600; continue; }
  fi
  next=$(date -d "tomorrow $BACKUP_AT" +%s)
  [ "$(date -d "today $BACKUP_AT" +%s)" -gt "$(date +%s)" ] && next=$(date -d "today $BACKUP_AT" +%s)
  log "next backup at $(date -d "@$next" '+%Y-%m-%d %H:%M')"
  sleep $((next - $(date +%s)))
  LAST_TS=0
done
