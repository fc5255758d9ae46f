#!/usr/bin/env bash
# Run once by the postgres image on first start (mounted into
# /docker-entrypoint-initdb.d/): the `backup` role, which can log in and read
# every table (pg_read_all_data, PostgreSQL 14+) and nothing else, for the
# backup service. Its password comes from a secret file, never from the YAML, and
# reaches psql through its environment (\getenv), not its command line.
set -euo pipefail
password_file="${BACKUP_DB_PASSWORD_FILE:-/run/secrets/backup_db_password}"
[ -s "$password_file" ] || { echo "initdb: $password_file is empty: no backup role" >&2; exit 1; }
BACKUP_DB_PASSWORD="$(cat "$password_file")" \
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
\getenv password BACKUP_DB_PASSWORD
CREATE ROLE backup LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
GRANT pg_read_all_data TO backup;
SQL
