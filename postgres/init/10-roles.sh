#!/usr/bin/env bash
# Least-privilege roles for the crawler's database (docs/security.md).
#
# Run by the postgres image on the first start of an empty data volume
# (/docker-entrypoint-initdb.d), as the superuser over the local socket. Safe to
# re-run: it creates what is missing and sets every role's attributes, grants
# and password again, which is also how a password is rotated:
#   docker compose exec -u postgres postgres /docker-entrypoint-initdb.d/10-roles.sh
#
#   crawler          owns the crawler's tables (creates them on its first start)
#   grafana_reader   SELECT on those tables, for Grafana's PostgreSQL datasource
#   pipeline_reader  SELECT on those tables, for the pipeline exporter
#   exporter         pg_monitor, for postgres_exporter
#
# None is a superuser or may create roles or databases, so none can run
# `COPY ... TO PROGRAM` (a shell on the NAS) or read server files. Each has its
# own password, read from SECRETS_DIR (default /run/secrets): NAME_db_password.
# The passwords reach psql through its environment (\getenv), never its
# command line.
set -euo pipefail

secrets=${SECRETS_DIR:-/run/secrets}

# Checked here, at the top level: an `exit` inside $(secret ...) would only leave
# the subshell, and psql would set an empty password.
for name in crawler grafana exporter pipeline; do
  file="$secrets/${name}_db_password"
  [ -s "$file" ] || { printf '10-roles.sh: %s is missing or empty\n' "$file" >&2; exit 1; }
done

# The first line of a secret file, without its line ending.
secret() {
  head -n 1 "$secrets/$1" | tr -d '\r\n'
}

CRAWLER_DB_PASSWORD="$(secret crawler_db_password)" \
GRAFANA_DB_PASSWORD="$(secret grafana_db_password)" \
EXPORTER_DB_PASSWORD="$(secret exporter_db_password)" \
PIPELINE_DB_PASSWORD="$(secret pipeline_db_password)" \
CRAWLER_DB="${POSTGRES_DB:-crawler}" \
  psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-crawler}" <<'SQL'
\getenv crawler_pw CRAWLER_DB_PASSWORD
\getenv grafana_pw GRAFANA_DB_PASSWORD
\getenv exporter_pw EXPORTER_DB_PASSWORD
\getenv pipeline_pw PIPELINE_DB_PASSWORD
\getenv db CRAWLER_DB

SELECT format('CREATE ROLE %I', name)
FROM unnest(ARRAY['crawler', 'grafana_reader', 'exporter', 'pipeline_reader']) AS name
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name)
\gexec

-- Attributes are set on every run, so a role changed by hand is put back.
-- Connection limits: a leaked reader password cannot use up the server's slots.
ALTER ROLE crawler WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 20 PASSWORD :'crawler_pw';
ALTER ROLE grafana_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 10 PASSWORD :'grafana_pw';
ALTER ROLE pipeline_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'pipeline_pw';
ALTER ROLE exporter WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  CONNECTION LIMIT 5 PASSWORD :'exporter_pw';

-- The database: only these roles connect; only the crawler makes temporary
-- tables (its batch writes COPY into one).
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO crawler;
GRANT CONNECT ON DATABASE :"db" TO grafana_reader, pipeline_reader, exporter;
-- The backup service's read-only role (backup/initdb-backup-role.sh, run before
-- this script) keeps the CONNECT that the REVOKE above took from PUBLIC.
SELECT format('GRANT CONNECT ON DATABASE %I TO backup', :'db')
WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'backup')
\gexec

-- The schema: the crawler creates its tables (its migrations run at start-up);
-- the readers may look, nobody else may create.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO crawler;
GRANT USAGE ON SCHEMA public TO grafana_reader, pipeline_reader;

-- SELECT on every table the crawler creates from now on, and on those it has
-- already created (a re-run after an upgrade).
ALTER DEFAULT PRIVILEGES FOR ROLE crawler IN SCHEMA public
  GRANT SELECT ON TABLES TO grafana_reader, pipeline_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader, pipeline_reader;

-- postgres_exporter: the statistics views, nothing of the data.
GRANT pg_monitor TO exporter;
SQL
printf '10-roles.sh: roles crawler, grafana_reader, pipeline_reader, exporter are set\n'
