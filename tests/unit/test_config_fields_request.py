"""Config of the field pipeline, request options, time zone and history: a good file loads into
typed objects; every broken new key is one `FILE:LINE: key: message`; `crawler check` names a
missing secret file or variable and never prints a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config.fields import FieldSpec
from crawler.config.root import load_config
from crawler.errors import ConfigError
from tests.crawler_proc import run_cli

GOOD = """\
fetch:
  proxy: http://proxy.example:3128
sources:
  - name: shop
    every: 1h
    urls: ["https://shop.example/api/search"]
    request:
      method: post
      json: {query: raspberry, page: 1}
      headers: {Accept-Language: en}
      headers_file: shop.headers
      auth: {bearer_env: SHOP_TOKEN}
    parser: json
    items: results
    fields:
      sku: id
      price: {path: price.amount, type: decimal, required: true}
    key: [sku]
    history: true
  - name: product_pages
    every: 6h
    urls: ["https://shop.example/p/{1..50}"]
    timezone: Europe/Paris
    user_agent: shopbot/1 (+https://me.example)
    fields:
      title: "h1::text"
      price: {selector: ".price::text", regex: '([\\d.,]+)', type: decimal, required: true}
      link: {selector: "a.more::attr(href)", type: url}
      published: {selector: "time::attr(datetime)", type: datetime}
      stock: {selector: ".stock::text", type: int, default: 0}
      sku: {json_ld: "offers.sku"}
      state: {embedded_json: "script#__NEXT_DATA__", path: "props.pageProps.item.state"}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "shop.headers").write_text("Cookie: session=abc\n")
    p = tmp_path / "crawler.yaml"
    p.write_text(text)
    return p


def test_the_issue_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "t")
    cfg = load_config(write(tmp_path, GOOD))
    shop, pages = cfg.sources
    assert cfg.fetch.proxy == "http://proxy.example:3128"
    assert shop.history and not pages.history
    req = shop.request
    assert req is not None and req.method == "POST"
    assert req.json == '{"page":1,"query":"raspberry"}'
    assert req.headers == (("Accept-Language", "en"),)
    assert req.headers_file == tmp_path / "shop.headers"
    assert req.auth is not None and req.auth.bearer_env == "SHOP_TOKEN"
    assert shop.fields == (
        FieldSpec(name="sku", selector="id"),
        FieldSpec(name="price", path="price.amount", type="decimal", required=True),
    )
    assert (
        pages.timezone == "Europe/Paris" and pages.user_agent == "shopbot/1 (+https://me.example)"
    )
    by_name = {f.name: f for f in pages.fields}
    assert by_name["price"].regex == r"([\d.,]+)"
    assert by_name["stock"].default == 0
    assert by_name["state"].embedded_json == "script#__NEXT_DATA__"
    assert pages.request is None


BASE = """\
sources:
  - name: s
    every: 1h
    urls: ["https://h.example/"]
"""


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (
            "    fields:\n      a: {selector: h1, type: money}\n",
            "crawler.yaml:6: sources.s.fields.a.type: must be str, int, float, decimal, bool, datetime or url",
        ),
        (
            "    fields:\n      a: {selector: h1, regex: '(x'}\n",
            "crawler.yaml:6: sources.s.fields.a.regex: '(x' is not a regular expression",
        ),
        (
            "    fields:\n      a: {selector: h1, required: true, default: 1}\n",
            "crawler.yaml:6: sources.s.fields.a.default: a required field has no default",
        ),
        (
            "    fields:\n      a: {selector: h1, type: int, default: many}\n",
            "crawler.yaml:6: sources.s.fields.a.default: is not a valid int",
        ),
        (
            "    fields:\n      a: {selector: h1, json_ld: x}\n",
            "crawler.yaml:6: sources.s.fields.a.json_ld: use one of selector, path, json_ld, embedded_json",
        ),
        (
            "    fields:\n      a: {all: true}\n",
            "crawler.yaml:6: sources.s.fields.a.selector: a field needs selector, path, json_ld or embedded_json",
        ),
        (
            "    fields:\n      a: {path: x}\n",
            "crawler.yaml:6: sources.s.fields.a.path: an html source selects with `selector`",
        ),
        (
            "    fields:\n      a: {json_ld: 'x[['}\n",
            "crawler.yaml:6: sources.s.fields.a.json_ld: JMESPath selector",
        ),
        (
            "    fields:\n      a: {strip: maybe, selector: h1}\n",
            "crawler.yaml:6: sources.s.fields.a.strip: must be true or false",
        ),
        (
            "    fields:\n      a: {selector: h1, default: {x: 1}}\n",
            "crawler.yaml:6: sources.s.fields.a.default: must be a value",
        ),
        (
            "    parser: json\n    fields:\n      a: {embedded_json: script}\n",
            "crawler.yaml:7: sources.s.fields.a.embedded_json: is for html sources",
        ),
        (
            "    timezone: Mars/Olympus\n    fields: {a: h1}\n",
            "crawler.yaml:5: sources.s.timezone: 'Mars/Olympus' is not a time zone",
        ),
        (
            "    history: yes please\n    fields: {a: h1}\n",
            "crawler.yaml:5: sources.s.history: must be true or false",
        ),
        (
            "    user_agent: ''\n    fields: {a: h1}\n",
            "crawler.yaml:5: sources.s.user_agent: must be a non-empty string",
        ),
        (
            "    request: {method: FETCH}\n    fields: {a: h1}\n",
            "crawler.yaml:5: sources.s.request.method: must be one of GET",
        ),
        (
            "    request: {json: {a: 1}}\n    fields: {a: h1}\n",
            "crawler.yaml:5: sources.s.request.json: a request body needs a method such as POST, not GET",
        ),
        (
            "    request:\n      method: POST\n      json: {a: 1}\n      form: {b: 2}\n    fields: {a: h1}\n",
            "crawler.yaml:8: sources.s.request.form: use one of json, form or body",
        ),
        (
            "    request:\n      headers: {Bad Name: x}\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.headers: 'Bad Name' is not a header name",
        ),
        (
            "    request:\n      headers_file: missing.headers\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.headers_file: cannot read",
        ),
        (
            "    request:\n      auth: {bearer_env: SURELY_NOT_SET_TOKEN}\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.auth.bearer_env: environment variable SURELY_NOT_SET_TOKEN is not set",
        ),
        (
            "    request:\n      auth: {basic_user: u}\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.auth.password_env: basic_user needs password_env or password_file",
        ),
        (
            "    request:\n      auth: {bearer_file: nope.token}\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.auth.bearer_file: cannot read",
        ),
        (
            "    request:\n      auth: {bearer: x}\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.auth.bearer: unknown key (did you mean 'bearer_env'?)",
        ),
        (
            "    request:\n      proxy: socks5://p:1080\n    fields: {a: h1}\n",
            "crawler.yaml:6: sources.s.request.proxy: must be an http:// (or https://) proxy URL",
        ),
    ],
    ids=lambda v: v if len(v) < 30 else None,
)
def test_broken_new_keys(tmp_path: Path, tail: str, expected: str) -> None:
    path = tmp_path / "crawler.yaml"
    path.write_text(BASE + tail)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [str(p) for p in info.value.problems]
    assert any(
        p.startswith(str(tmp_path / expected.split(": ")[0]))
        and expected.split(":", 2)[2].strip() in p
        for p in found
    ), found


def test_fetch_proxy_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "crawler.yaml"
    path.write_text("fetch:\n  proxy: proxy:3128\n" + BASE + "    fields: {a: h1}\n")
    with pytest.raises(ConfigError, match=r"crawler.yaml:2: fetch.proxy: must be an http://"):
        load_config(path)


def test_check_names_a_bad_header_file_line_but_not_its_secret(tmp_path: Path) -> None:
    (tmp_path / "h").write_text("Cookie: fine\nsecret-token-hunter2\n")
    cfg = tmp_path / "crawler.yaml"
    cfg.write_text(BASE + "    request: {headers_file: h}\n    fields: {a: h1}\n")
    proc = run_cli("check", "-c", str(cfg))
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert (
        f"crawler.yaml:5: sources.s.request.headers_file: {tmp_path / 'h'}:2: not a `Name: value` line"
        in out
    )
    assert "hunter2" not in out
