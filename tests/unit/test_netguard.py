"""Which addresses are public (crawler/fetch/netguard.py), which a source trusts, and the config keys."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from crawler.config.root import load_config
from crawler.errors import ConfigError, ErrorKind, FetchError
from crawler.fetch.netguard import SourcePolicy, category


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:192.168.1.1", "private"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "any"),  # TEST-NET-1: "private" or "special-purpose" by Python version
        ("198.18.0.1", "any"),  # benchmarking
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("::ffff:93.184.215.14", None),
        ("100.128.0.1", None),  # just outside the shared range
    ],
)
def test_category(address: str, why: str | None) -> None:
    got = category(ipaddress.ip_address(address))
    assert got is not None if why == "any" else got == why


def policy(**kw: object) -> SourcePolicy:
    return SourcePolicy(source="s", trusted=frozenset({"127.0.0.1", "localhost"}), **kw)  # type: ignore[arg-type]


def test_written_literals_and_localhost_are_trusted_nothing_else() -> None:
    p = policy()
    p.check("127.0.0.1", "127.0.0.1")
    p.check("localhost", "127.0.0.1")
    p.check("localhost", "::1")
    p.check("example.org", "93.184.215.14")
    for host, address in (
        ("127.0.0.2", "127.0.0.2"),
        ("router.lan", "192.168.1.1"),
        ("evil.example", "127.0.0.1"),  # a name that resolves to a written literal
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ):
        with pytest.raises(FetchError) as err:
            p.check(host, address)
        assert err.value.kind is ErrorKind.BLOCKED_ADDRESS
        assert "allow_private: true" in str(err.value) and "'s'" in str(err.value)


def test_allow_private_and_the_network_list_open_the_way() -> None:
    policy(allow_private=True).check("router.lan", "192.168.1.1")
    nets = (ipaddress.ip_network("192.168.1.0/24"),)
    policy(networks=nets).check("router.lan", "192.168.1.1")
    with pytest.raises(FetchError):
        policy(networks=nets).check("nas.lan", "192.168.2.1")


def write(tmp_path: Path, source_extra: str = "", fetch: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"state_dir: {tmp_path}\n{fetch}sources:\n  - name: s\n    every: 1h\n"
        f"    url: http://127.0.0.1:8080/\n    fields: {{t: h1::text}}\n{source_extra}"
    )
    return path


def test_source_policy_from_config(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "    urls: ['http://[::1]:8080/a', 'http://LOCALHOST/b', 'http://nas.lan/c']\n"
            "    allow_private: true\n",
            "fetch: {allow_private_networks: [192.168.1.0/24, 10.0.0.7]}\n",
        )
    )
    p = SourcePolicy.of(cfg.sources[0], cfg)
    assert p.trusted == frozenset({"::1", "localhost"}) and p.allow_private
    assert [str(n) for n in p.networks] == ["192.168.1.0/24", "10.0.0.7/32"]


def test_credentials_in_a_source_url_are_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("http://127.0.0.1", "http://me:s3cret@127.0.0.1"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "user:password@" in text and "request.auth" in text and "s3cret" not in text


def test_a_bad_network_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"allow_private_networks.*not a network"):
        load_config(write(tmp_path, fetch="fetch: {allow_private_networks: [192.168.1.0/33]}\n"))
