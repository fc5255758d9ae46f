"""`deploy/install` on a booted Debian with systemd as PID 1, checked with the real `systemctl`
and `journalctl` (the `pi` fixture, tests/system/conftest.py, installs once per module).

The tests run in file order on one machine, from looking to changing it: the installed
services and what they do; the findings of the first real runs, each a test that failed
before its fix (docs/pi.md, "What the real runs found"); the service's life (watchdog, kill,
stop); an upgrade and a rolled-back upgrade; uninstall, a power cut, and a purge that leaves
nothing behind.
"""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from tests.helpers import wait_for
from tests.system.conftest import CHECKOUT, SNAPSHOT, Pi

pytestmark = pytest.mark.timeout(600)

LOCK = "requirements-pi.lock"


def active(pi: Pi, unit: str = "crawler.service") -> tuple[str, str]:
    return pi.machine.show(unit, "ActiveState"), pi.machine.show(unit, "SubState")


def current_release(pi: Pi) -> str:
    return pi.machine.run("readlink -f /opt/crawler/current").stdout.strip()


def textfile(pi: Pi, name: str) -> str:
    return pi.machine.run(
        f"cat /var/lib/node_exporter/textfile_collector/{name}", check=False
    ).stdout


def rows(pi: Pi, sql: str) -> list[tuple[object, ...]]:
    with pi.nas.admin() as conn:
        return conn.execute(sql).fetchall()


# ---------------------------------------------------------------- the install


def test_install_as_the_readme_says(pi: Pi) -> None:
    out = pi.install_output
    assert "==> done." in out, out
    assert "promtail: the binary in place" in out, out
    assert "apt.grafana.com" not in out  # the repository is not used when a binary is there
    pi.notes.append(f"install: {pi.install_seconds:.1f} s")


def test_crawler_is_active_after_ready(pi: Pi) -> None:
    wait_for(lambda: active(pi) == ("active", "running"), timeout=30, interval=0.5)
    assert pi.machine.show("crawler.service", "Type") == "notify"
    started = int(pi.machine.show("crawler.service", "ExecMainStartTimestampMonotonic"))
    ready = int(pi.machine.show("crawler.service", "ActiveEnterTimestampMonotonic"))
    assert ready > started  # active only once READY=1 came, after the process started
    pi.notes.append(f"READY=1 after {(ready - started) / 1e6:.2f} s")
    journal = pi.machine.run("journalctl -u crawler.service -o cat --no-pager").stdout
    assert "crawler started" in journal


def test_records_stored_in_the_nas_postgresql_over_tls(pi: Pi) -> None:
    """The hardened unit stores with the installed password, TLS `verify-full`."""
    wait_for(
        lambda: (
            rows(pi, "SELECT count(*) FROM scraped_data")[0][0] == 60
            if rows(pi, "SELECT count(*) FROM pg_tables WHERE tablename = 'scraped_data'")[0][0]
            else False
        ),
        timeout=60,
        interval=1,
    )
    assert rows(pi, "SELECT status FROM crawler_jobs") == [("success",)]
    with psycopg.connect(pi.nas.dsn("crawler")) as conn:  # the crawler role, verify-full
        assert conn.execute("SELECT count(*) FROM scraped_data").fetchone() == (60,)
    config = pi.machine.path("/etc/crawler/crawler.yaml").read_text()
    assert "sslmode: verify-full" in config


def test_state_lives_under_the_state_directory(pi: Pi) -> None:
    listing = pi.machine.run("stat -c '%U %a %n' /var/lib/crawler /var/lib/crawler/*").stdout
    assert "crawler 750 /var/lib/crawler\n" in listing, listing
    assert re.search(r"^crawler 600 /var/lib/crawler/http_state\.sqlite$", listing, re.M), listing
    writable = pi.machine.run(
        "systemctl show -p ReadWritePaths,StateDirectory,ProtectSystem --value crawler.service"
    ).stdout.split()
    assert "strict" in writable and "crawler" in writable


def test_metrics_need_the_password(pi: Pi) -> None:
    status, _ = pi.get(f"{pi.metrics}/metrics")
    assert status == 401
    status, body = pi.get(f"{pi.metrics}/metrics", auth=True)
    assert status == 200
    assert re.search(r'^crawler_records_stored_total\{[^}]*source="quotes"[^}]*\} 60', body, re.M)


def test_readyz_and_healthz_answer_without_the_password(pi: Pi) -> None:
    """Finding 1: deploy/release polls /readyz without credentials; under basic auth it got
    401, so every upgrade of a default install was rolled back. /readyz is open like /healthz
    (docs/security.md): it says only whether the crawler is ready."""
    assert pi.get(f"{pi.metrics}/healthz")[0] == 200
    status, body = pi.get(f"{pi.metrics}/readyz")
    assert status == 200, body
    assert '"ready": true' in body


def test_unit_options_this_kernel_cannot_enforce_are_reported(pi: Pi) -> None:
    """IPAddressDeny= needs cgroup v2 BPF: enforced here, or systemd says it is not."""
    probe = pi.machine.run(
        "systemd-run --quiet --wait --pipe --collect -p IPAddressDeny=127.0.0.0/8 "
        f"curl -s -o /dev/null --max-time 3 {pi.metrics}/healthz",
        check=False,
    )
    if probe.returncode == 0:  # the packet went through: systemd must have said why
        journal = pi.machine.run("journalctl -b -o cat --no-pager | grep -i bpf", check=False)
        assert "BPF" in journal.stdout, "IPAddressDeny= is not enforced and nothing says so"
        pi.notes.append(f"IPAddressDeny= NOT enforced by this kernel: {journal.stdout.strip()}")
    else:
        pi.notes.append("IPAddressDeny= enforced (the probe's connection was refused)")


def test_node_exporter_needs_the_password_and_exports_the_textfiles(pi: Pi) -> None:
    url = f"http://127.0.0.1:{pi.node_port}/metrics"
    assert active(pi, "prometheus-node-exporter.service") == ("active", "running")
    assert pi.get(url)[0] == 401
    status, body = pi.get(url, auth=True)
    assert status == 200
    assert re.search(r'^crawler_deploy_info\{version="[^"]+"\} 1$', body, re.M), body[-3000:]
    assert "crawler_deploy_last_rollback_timestamp_seconds 0" in body


def test_node_exporter_probe_never_loses_to_sigpipe(pi: Pi) -> None:
    """Finding 2: `--help | grep -q` under pipefail read "no --web.config.file" whenever
    node_exporter died of SIGPIPE (13 of 40 tries), and no password was configured."""
    out = pi.machine.run(
        f"source {CHECKOUT}/deploy/lib.sh; set -o pipefail; ok=0; for i in $(seq 40); do "
        "node_exporter_knows_web_config && ok=$((ok + 1)); done; echo $ok"
    ).stdout
    assert out.strip() == "40"


def test_rpi_throttled_off_a_pi_says_why_once_and_stays_quiet(pi: Pi) -> None:
    """Finding 4: off a Pi the collector failed every 30 s (the system `degraded`) and its
    reason never reached the journal."""
    # The timer starts it 10 s after boot and every 30 s: let it try at least twice.
    time.sleep(max(0.0, pi.started + 35 - time.monotonic()))
    assert pi.machine.show("rpi-throttled.timer", "ActiveState") == "active"
    assert pi.machine.show("rpi-throttled.service", "Result") == "success"
    assert pi.machine.run("systemctl --failed --plain --no-legend").stdout.strip() == ""
    said = pi.machine.run("journalctl -t rpi-throttled -o cat --no-pager").stdout
    assert said.count("not a Raspberry Pi") == 1, said
    unit_lines = pi.machine.run("journalctl -u rpi-throttled.service -o cat --no-pager").stdout
    assert unit_lines.strip() == "", unit_lines


def test_rpi_throttled_on_a_pi_feeds_node_exporter(pi: Pi) -> None:
    """With the firmware's door and a vcgencmd (stand-ins), the flags reach node_exporter."""
    try:
        pi.machine.run(
            "touch /dev/vcio && printf '#!/bin/sh\\necho throttled=0x50005\\n' "
            "> /usr/local/bin/vcgencmd && chmod 0755 /usr/local/bin/vcgencmd && "
            "systemctl start rpi-throttled.service"
        )
        status, body = pi.get(f"http://127.0.0.1:{pi.node_port}/metrics", auth=True)
        assert status == 200
        assert 'rpi_throttled_flag{flag="under_voltage",when="now"} 1' in body
        assert "rpi_throttled_raw 327685" in body
    finally:
        pi.machine.run("rm -f /dev/vcio /usr/local/bin/vcgencmd")


def test_journald_keeps_the_journal_in_ram(pi: Pi) -> None:
    """Storage=volatile from the install on: lines go to /run, and no journal file on the card
    is written after it (those from before the install stay: journald never deletes them)."""
    # (The journald stopped by the install's restart closed its file on the card then.)
    pi.machine.run(
        "touch /run/volatile-mark && sleep 1.1 && logger -t system-test volatile-check && "
        "journalctl --sync"
    )
    header = pi.machine.run("journalctl --header --no-pager").stdout
    assert "File path: /run/log/journal/" in header
    said = pi.machine.run("journalctl -t system-test -o cat --no-pager").stdout
    assert "volatile-check" in said
    written = pi.machine.run("find /var/log/journal -type f -newer /run/volatile-mark").stdout
    assert written.strip() == "", written


def test_promtail_ships_the_crawler_journal_to_loki_or_the_install_says_it_cannot(pi: Pi) -> None:
    """Grafana's APT package reads the journal; Grafana's release binary (the one put in place
    here) is built without journal support. The install must say so, not hide it."""
    import json
    import urllib.parse

    assert active(pi, "promtail.service") == ("active", "running")
    said = pi.machine.run("journalctl -u promtail.service -b -o cat --no-pager").stdout
    if "not compiled into this build" in said:
        assert "this promtail build cannot read the journal" in pi.install_output
        pi.notes.append("Promtail: this build cannot read the journal; the install warned")
        return

    def found() -> int:
        query = urllib.parse.urlencode(
            {"query": '{job="crawler", host="pi-system-test"} |= "crawler started"'}
        )
        status, body = pi.get(f"{pi.loki}/loki/api/v1/query_range?{query}&limit=10")
        return len(json.loads(body)["data"]["result"]) if status == 200 else 0

    try:
        wait_for(found, timeout=60, interval=1)
    except AssertionError:
        logs = pi.machine.run("journalctl -u promtail.service -n 40 -o cat --no-pager").stdout
        raise AssertionError(f"nothing in Loki; Promtail said:\n{logs}") from None


def test_release_is_the_hash_checked_lock(pi: Pi) -> None:
    """Finding 5: the release was `pip install .[binary]`, resolved afresh on every install;
    now exactly requirements-pi.lock's pins for this machine."""
    installed = dict(
        line.split("==")
        for line in pi.machine.run("/opt/crawler/current/bin/pip freeze --all").stdout.split()
        if "==" in line
    )
    markers = pi.machine.run(
        "/opt/crawler/current/bin/python -c 'import sys, platform; "
        'print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())\''
    ).stdout.split()
    python, machine = markers
    pinned = {}
    for line in pi.machine.path(f"{CHECKOUT}/{LOCK}").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)(?: ; (.*?))? *\\?$", line)
        if not m:
            continue
        marker = m.group(3) or ""
        env = {"python_full_version": python + ".0", "platform_machine": machine}
        if marker and not _marker_holds(marker, env):
            continue
        pinned[m.group(1).lower()] = m.group(2)

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {norm(k): v for k, v in pinned.items()}
    got = {norm(k): v for k, v in installed.items() if norm(k) not in ("pip", "pi-crawler")}
    assert got == pinned


def _marker_holds(marker: str, env: dict[str, str]) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate(
        {
            "python_full_version": env["python_full_version"],
            "python_version": env["python_full_version"].rsplit(".", 1)[0],
            "platform_machine": env["platform_machine"],
            "implementation_name": "cpython",
        }
    )


# ---------------------------------------------------------------- its life


def test_watchdog_pings_arrive(pi: Pi) -> None:
    first = int(pi.machine.show("crawler.service", "WatchdogTimestampMonotonic"))
    assert first > 0
    # WatchdogSec=60: a ping every 30 s.
    wait_for(
        lambda: int(pi.machine.show("crawler.service", "WatchdogTimestampMonotonic")) > first,
        timeout=40,
        interval=1,
    )


def test_sigkill_is_followed_by_a_restart(pi: Pi) -> None:
    pid = pi.machine.show("crawler.service", "MainPID")
    restarts = int(pi.machine.show("crawler.service", "NRestarts"))
    began = time.monotonic()
    pi.machine.run(f"kill -9 {pid}")
    wait_for(
        lambda: (
            pi.machine.show("crawler.service", "MainPID") not in ("0", pid)
            and active(pi) == ("active", "running")
        ),
        timeout=60,
        interval=0.3,
    )
    assert int(pi.machine.show("crawler.service", "NRestarts")) == restarts + 1
    pi.notes.append(f"active again {time.monotonic() - began:.1f} s after kill -9")


def test_stop_is_orderly(pi: Pi) -> None:
    began = time.monotonic()
    pi.machine.run("systemctl stop crawler.service", timeout=60)
    took = time.monotonic() - began
    assert took < 45  # TimeoutStopSec=45
    assert pi.machine.show("crawler.service", "ExecMainStatus") == "0"
    assert pi.machine.show("crawler.service", "Result") == "success"
    journal = pi.machine.run("journalctl -u crawler.service -o cat -n 20 --no-pager").stdout
    assert "crawler stopped" in journal
    pi.notes.append(f"orderly stop: {took:.1f} s")
    pi.machine.run("systemctl start crawler.service", timeout=150)
    assert active(pi) == ("active", "running")


def test_reload_adds_a_source_without_a_restart(pi: Pi) -> None:
    """`systemctl reload crawler` (ExecReload=, SIGHUP): a source added to crawler.yaml shows
    up in /metrics, and the process is the same."""
    pid = pi.machine.show("crawler.service", "MainPID")
    config = pi.machine.path("/etc/crawler/crawler.yaml")
    text = config.read_text()
    config.write_text(text + text[text.index("  - name: quotes") :].replace("quotes", "quotes_two"))
    pi.machine.run("systemctl reload crawler.service")

    def shown() -> bool:
        return 'source="quotes_two"' in pi.get(f"{pi.metrics}/metrics", auth=True)[1]

    wait_for(shown, timeout=30, interval=0.5)
    assert pi.machine.show("crawler.service", "MainPID") == pid
    assert active(pi) == ("active", "running")


# ---------------------------------------------------------------- upgrades


def test_an_upgrade_switches_releases_and_keeps_the_service_up(pi: Pi) -> None:
    """A second install from a newer checkout (version 0.1.1): the new release is current,
    the old one previous, no rollback recorded (finding 1: every upgrade was rolled back)."""
    old = current_release(pi)
    pi.copy_checkout("/root/pi-crawler-next")
    pi.machine.run(
        "sed -i 's/^version = .*/version = \"0.1.1\"/' /root/pi-crawler-next/pyproject.toml"
    )
    done = pi.install("/root/pi-crawler-next", check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    new = current_release(pi)
    assert new != old
    assert pi.machine.run("readlink -f /opt/crawler/previous").stdout.strip() == old
    assert active(pi) == ("active", "running")
    body = pi.get(f"http://127.0.0.1:{pi.node_port}/metrics", auth=True)[1]
    assert 'crawler_deploy_info{version="0.1.1"} 1' in body
    assert "crawler_deploy_last_rollback_timestamp_seconds 0" in body


def test_an_upgrade_that_never_gets_ready_is_rolled_back(pi: Pi) -> None:
    before = current_release(pi)
    pi.copy_checkout("/root/pi-crawler-broken")
    # A release that runs but never answers /readyz: its route renamed.
    pi.machine.run(
        'cd /root/pi-crawler-broken && sed -i \'s|"/readyz"|"/not-ready"|\' '
        "$(grep -rl '\"/readyz\"' crawler)"
    )
    done = pi.install(
        "/root/pi-crawler-broken",
        check=False,
        CRAWLER_READY_ATTEMPTS="8",
        CRAWLER_READY_INTERVAL="1",
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "rolled back" in done.stderr and "the previous release is ready again" in done.stderr
    assert current_release(pi) == before
    assert active(pi) == ("active", "running")
    assert pi.get(f"{pi.metrics}/readyz")[0] == 200
    last = re.search(
        r"^crawler_deploy_last_rollback_timestamp_seconds (\d+)$",
        textfile(pi, "crawler_deploy.prom"),
        re.M,
    )
    assert last and int(last.group(1)) > 0
    said = pi.machine.run("journalctl -t crawler-deploy -o cat --no-pager").stdout
    assert "rolled back" in said


# ---------------------------------------------------------------- uninstall


def test_uninstall_leaves_node_exporter_with_its_password_after_a_boot(pi: Pi) -> None:
    """Finding 3: uninstall stopped node_exporter (through the textfile mount), removed its
    password, and its try-restart did nothing; at the next boot it answered without one."""
    pi.machine.run(f"{CHECKOUT}/deploy/uninstall")
    assert pi.machine.run("systemctl cat crawler.service", check=False).returncode != 0
    url = f"http://127.0.0.1:{pi.node_port}/metrics"
    # uninstall restarts node_exporter: it answers once it listens, and with a password
    assert wait_for(lambda: pi.answer(url), timeout=30, interval=0.2) == 401
    pi.machine.kill()  # a power cut
    pi.machine.boot()
    assert wait_for(lambda: pi.answer(url), timeout=30, interval=0.5) == 401


def test_purge_leaves_nothing_the_install_added(pi: Pi) -> None:
    pi.machine.run(f"{CHECKOUT}/deploy/uninstall --purge", timeout=300)
    after = pi.machine.run(SNAPSHOT).stdout
    added = sorted(set(after.splitlines()) - set(pi.snapshot.splitlines()))
    removed = sorted(set(pi.snapshot.splitlines()) - set(after.splitlines()))
    assert (added, removed) == ([], [])
