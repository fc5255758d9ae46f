"""Metrics past one NAS: the project's commented `remote_write` block, uncommented, makes a real
Prometheus ship a real crawler's series to a second real Prometheus (the long-term store's
stand-in, started with `--web.enable-remote-write-receiver`), where they can be queried.

Real processes on 127.0.0.1 only: `crawler run` against the local test site, two Prometheus
servers (Debian's binary) with the project's prometheus.yml (ports, targets and intervals
rewritten for a test that lasts seconds). The compose override that starts the store is checked
by Compose's own config loader in tests/ops/test_stack.py's way.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from tests.helpers import free_port, require, wait_for
from tests.ops.test_alerting_e2e import Processes, http_ok
from tests.site import Site

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "# --- long-term store"
END = "# --- end of long-term store"


def shipped_block() -> dict[str, object]:
    """The commented remote_write block of prometheus/prometheus.yml, uncommented."""
    text = (ROOT / "prometheus" / "prometheus.yml").read_text()
    block = text[text.index(BEGIN) : text.index(END)]
    lines = [line[1:] for line in block.splitlines() if re.match(r"^#(remote_write:|  )", line)]
    parsed = yaml.safe_load("\n".join(lines))
    assert isinstance(parsed, dict) and list(parsed) == ["remote_write"], parsed
    return parsed


def test_the_shipped_block_is_commented_out_by_default() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert "remote_write" not in config
    [target] = shipped_block()["remote_write"]  # type: ignore[misc]
    assert target["url"] == "http://victoriametrics:8428/api/v1/write"
    override = yaml.safe_load((ROOT / "compose.longterm.yaml").read_text())
    assert "victoriametrics" in override["services"]
    assert re.fullmatch(
        r"victoriametrics/victoria-metrics:v\d+\.\d+\.\d+",
        override["services"]["victoriametrics"]["image"],
    )


def query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return list(json.load(resp)["data"]["result"])


def test_remote_write_ships_crawler_series_to_a_second_prometheus(
    site: Site, tmp_path: Path
) -> None:
    prometheus = require("prometheus")
    crawler_port, sender, receiver = free_port(), free_port(), free_port()
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(
        f"""\
instance: remote-write-test
state_dir: {tmp_path}/var
metrics: {{listen: "127.0.0.1:{crawler_port}"}}
fetch: {{politeness_delay: 0s, robots: false}}
sources:
  - name: quotes
    every: 1s
    urls: ["{site.base}/page/0"]
    items: div.quote
    fields: {{text: span.text::text}}
"""
    )
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config.update(shipped_block())
    config["remote_write"][0]["url"] = f"http://127.0.0.1:{receiver}/api/v1/write"
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config.pop("storage", None)  # Prometheus 3's retention key; Debian's 2.42 predates it
    config.pop("rule_files", None)
    config.pop("alerting", None)
    config["scrape_configs"] = [
        {"job_name": "crawler", "static_configs": [{"targets": [f"127.0.0.1:{crawler_port}"]}]}
    ]
    (tmp_path / "sender.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "receiver.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1h"}}))
    procs = Processes(tmp_path)
    try:
        procs.start("crawler", [sys.executable, "-m", "crawler", "run", "-c", str(cfg)])
        for name, port in (("receiver", receiver), ("sender", sender)):
            args = [
                prometheus,
                f"--config.file={tmp_path / f'{name}.yml'}",
                f"--storage.tsdb.path={tmp_path / name}",
                f"--web.listen-address=127.0.0.1:{port}",
            ]
            if name == "receiver":
                args.append("--web.enable-remote-write-receiver")
            procs.start(name, args)
        for port in (receiver, sender):

            def ready(port: int = port) -> bool:
                procs.check_alive()  # a config Prometheus refuses shows its log here
                return http_ok(f"http://127.0.0.1:{port}/-/ready")

            wait_for(ready, timeout=60)

        def shipped() -> list[dict[str, object]]:
            procs.check_alive()
            return query(
                receiver, 'crawler_source_interval_seconds{job="crawler", source="quotes"}'
            )

        [series] = wait_for(shipped, timeout=60, interval=0.5)  # type: ignore[misc]
        assert series["metric"]["instance"] == f"127.0.0.1:{crawler_port}"  # type: ignore[index]
        assert float(series["value"][1]) == 1.0  # type: ignore[index]
        # The receiver scrapes nothing itself: everything it has came over remote_write.
        assert query(receiver, "up") and not query(receiver, 'up{job="prometheus"}')
    finally:
        procs.stop()
