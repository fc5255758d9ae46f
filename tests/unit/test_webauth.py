"""Basic auth for the crawler's endpoints (crawler/observability/webauth.py): the web-config file and checks."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from crawler.config.root import load_config
from crawler.config.web import read_users
from crawler.errors import ConfigError
from crawler.observability.webauth import BasicAuth

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_reads_an_exporter_toolkit_web_config_or_a_bare_mapping(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config: {{}}\nbasic_auth_users:\n  prometheus: '{HASH}'\n")
    assert read_users(web) == {"prometheus": HASH}
    web.write_text(f"prometheus: '{HASH}'\n")
    assert read_users(web) == {"prometheus": HASH}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  prometheus: hunter2\n", "needs a bcrypt hash"),
        ("basic_auth_users: {}\n", "has no `basic_auth_users"),
        ("[1, 2]\n", "has no `basic_auth_users"),
    ],
)
def test_a_bad_web_config_is_a_config_error_with_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "web.yml").write_text(text)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"state_dir: {tmp_path}\nmetrics:\n  basic_auth: web.yml\n"
        "sources:\n  - {name: s, every: 1h, url: 'http://127.0.0.1/', fields: {t: h1::text}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert f"{cfg}:3: metrics.basic_auth:" in str(err.value) and message in str(err.value)
    assert "hunter2" not in str(err.value)


async def test_checks_and_remembers_only_good_credentials() -> None:
    auth = BasicAuth({"prometheus": HASH})
    assert not await auth.allows(None)
    assert not await auth.allows("Bearer x")
    assert not await auth.allows("Basic !!!")
    assert not await auth.allows(header("prometheus", "wrong"))
    assert not await auth.allows(header("nobody", "pw"))
    assert not auth._good
    assert await auth.allows(header("prometheus", "pw"))
    assert len(auth._good) == 1 and b"pw" not in next(iter(auth._good))
    assert await auth.allows(header("prometheus", "pw"))  # from the cache


async def test_a_check_outlives_the_request_that_started_it() -> None:
    """A scrape that times out mid-check still leaves the answer for the next one."""
    import asyncio

    auth = BasicAuth({"prometheus": HASH})
    first = asyncio.create_task(auth.allows(header("prometheus", "pw")))
    await asyncio.sleep(0)  # the check has started
    first.cancel()
    # The answer lands first, the pending entry leaves in the task's done callback, one turn of
    # the loop later: wait for both (a loaded machine found the gap).
    for _ in range(200):
        if auth._good and not auth._pending:
            break
        await asyncio.sleep(0.01)
    assert auth._good and not auth._pending
