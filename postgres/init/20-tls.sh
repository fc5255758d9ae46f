#!/usr/bin/env bash
# TLS for PostgreSQL, and password-over-TLS as the only way in from the network
# (docs/security.md).
#
# Run by the postgres image on the first start of an empty data volume, after
# 10-roles.sh. It makes a self-signed certificate (ten years) for the names the
# clients use: `postgres` (the stack's own network), localhost, and NAS_NAME and
# NAS_ADDRESS from .env, so the Pi can connect with sslmode=verify-full and
# sslrootcert= a copy of server.crt (docs/security.md says how to copy it out).
# Then ssl=on, and pg_hba.conf accepts network connections only with TLS and a
# SCRAM password, and never for the superuser `postgres` (local socket only).
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"

if [ ! -s "$PGDATA/server.key" ]; then
  names="DNS:postgres,DNS:localhost,IP:127.0.0.1"
  for name in ${NAS_NAME:-} ${NAS_ADDRESS:-}; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then
      names="$names,IP:$name"
    else
      names="$names,DNS:$name"
    fi
  done
  (
    umask 077
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -sha256 \
      -subj "/CN=${NAS_NAME:-postgres}" -addext "subjectAltName=$names" \
      -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" 2>/dev/null
  )
  chmod 0600 "$PGDATA/server.key"
  chmod 0644 "$PGDATA/server.crt"
  printf '20-tls.sh: made %s for %s\n' "$PGDATA/server.crt" "$names"
fi

psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-crawler}" <<'SQL'
ALTER SYSTEM SET ssl = on;
ALTER SYSTEM SET ssl_cert_file = 'server.crt';
ALTER SYSTEM SET ssl_key_file = 'server.key';
ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2';
ALTER SYSTEM SET password_encryption = 'scram-sha-256';
SQL

# Keep the local-socket lines (administration from inside the container), and
# replace every network line.
hba="$PGDATA/pg_hba.conf"
grep -v -E '^[[:space:]]*host' "$hba" > "$hba.new"
cat >> "$hba.new" <<'HBA'
# Network connections (20-tls.sh): TLS and a SCRAM password, never the superuser.
hostssl all postgres all reject
hostssl all all      all scram-sha-256
HBA
cat "$hba.new" > "$hba"   # keeps the file's owner and mode
rm -f "$hba.new"
printf '20-tls.sh: ssl=on; network connections need TLS and a password\n'
