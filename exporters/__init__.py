"""Exporters for what no off-the-shelf exporter knows.

- ``exporters.throttled``: the Raspberry Pi firmware's ``get_throttled`` flags,
  written for node_exporter's textfile collector (runs on the Pi, stdlib only).
- ``exporters.pipeline``: data freshness, backlog and failures read from
  PostgreSQL at scrape time (runs next to the database, on the NAS).
"""
