"""`browser:` and a source's `render:` (issue 26): the keys as the issue spells them, their
defaults, and every mistake named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config.root import load_config
from crawler.errors import ConfigError

SOURCE = """\
  - name: spa_shop
    every: 1h
    urls: ["https://shop.example/products"]
    items: div.product
    fields: {name: "h2::text", price: {selector: ".price::text", type: decimal}}
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "crawler.yaml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [str(p).split(": ", 1)[1] for p in info.value.problems]


def test_the_issues_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_PASSWORD", "s3cret")
    cfg = load(
        tmp_path,
        """\
browser:
  endpoint: https://nas.local:9222
  max_pages: 2
  basic_user: crawler
  password_env: BROWSER_PASSWORD
sources:
"""
        + SOURCE
        + """\
    render:
      wait_for: "div.product"
      timeout: 30s
      block: [image, font, media]
""",
    )
    assert cfg.browser is not None
    assert (cfg.browser.endpoint, cfg.browser.max_pages) == ("https://nas.local:9222", 2)
    assert (cfg.browser.basic_user, cfg.browser.password) == ("crawler", "s3cret")
    assert "s3cret" not in repr(cfg.browser)
    render = cfg.sources[0].render
    assert render is not None
    assert (render.wait_for, render.timeout, render.block) == (
        "div.product",
        30.0,
        ("image", "font", "media"),
    )


def test_defaults_and_no_render_without_the_key(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "browser: {executable: /usr/bin/chromium}\nsources:\n"
        + SOURCE
        + "    render: {}\n"
        + SOURCE.replace("spa_shop", "plain"),
    )
    assert cfg.browser is not None and cfg.browser.restart_after == 200
    render = cfg.sources[0].render
    assert render is not None
    assert (render.wait_for, render.wait, render.timeout, render.block) == (
        None,
        "networkidle",
        30.0,
        ("image", "font", "media"),
    )
    assert cfg.sources[1].render is None


def test_mistakes_are_named(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "browser: {endpoint: 'ftp://nas:9222', executable: /usr/bin/chromium}\nsources:\n"
        + SOURCE
        + "    render: {wait_for: 'h2::text', block: [image, document, sprites], wait: idle}\n",
    )
    assert [p.split(":", 1)[0] for p in found] == [
        "browser.endpoint",
        "sources.spa_shop.render.wait_for",
        "sources.spa_shop.render.wait",
        "sources.spa_shop.render.block",
    ]
    assert any(p.startswith("browser.endpoint") for p in found)
    assert any(p.startswith("sources.spa_shop.render.wait_for") for p in found)
    assert any(p.startswith("sources.spa_shop.render.block") for p in found)


def test_render_needs_a_browser_and_one_endpoint(tmp_path: Path) -> None:
    assert problems(tmp_path, "sources:\n" + SOURCE + "    render: {}\n") == [
        "sources.spa_shop.render: needs a `browser:` section (an `endpoint` or an `executable`)"
    ]
    assert problems(tmp_path, "browser: {max_pages: 1}\nsources:\n" + SOURCE) == [
        "browser.endpoint: give exactly one of `endpoint` and `executable`"
    ]
    assert problems(
        tmp_path, "browser: {endpoint: 'https://nas:9222', basic_user: c}\nsources:\n" + SOURCE
    ) == ["browser.basic_user: needs `password_env` or `password_file`"]


@pytest.mark.parametrize(
    "url",
    ["http://nas.local:9222", "ws://192.168.1.5:9222/devtools/browser/x", "http://[fe80::1]:9222"],
)
def test_basic_auth_refuses_a_plain_endpoint_off_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("BROWSER_PASSWORD", "s3cret")
    path = tmp_path / "crawler.yaml"
    path.write_text(
        "browser:\n"
        "  basic_user: crawler\n"
        "  password_env: BROWSER_PASSWORD\n"
        f"  endpoint: '{url}'\n"
        "sources:\n" + SOURCE
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:4: browser.endpoint: with `basic_user` the endpoint must be https:// or wss:// "
        "(or loopback): the password would cross the network in clear"
    ]
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://nas.local:9222",
        "wss://nas.local/devtools/browser/x",
        "http://127.0.0.1:9222",
        "ws://[::1]:9222/devtools/browser/x",
        "http://localhost:9222",
    ],
)
def test_basic_auth_takes_tls_or_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("BROWSER_PASSWORD", "s3cret")
    cfg = load(
        tmp_path,
        f"browser: {{endpoint: '{url}', basic_user: c, password_env: BROWSER_PASSWORD}}\n"
        "sources:\n" + SOURCE,
    )
    assert cfg.browser is not None and cfg.browser.endpoint == url


def test_render_is_for_html_pages(tmp_path: Path) -> None:
    text = (
        "browser: {endpoint: 'http://nas:9222'}\nsources:\n"
        + SOURCE.replace("items: div.product", "parser: json\n    items: data").replace(
            '{name: "h2::text", price: {selector: ".price::text", type: decimal}}', "{name: n}"
        )
        + "    render: {}\n"
    )
    assert problems(tmp_path, text) == [
        "sources.spa_shop.render: renders html pages: not for `parser: json`"
    ]
