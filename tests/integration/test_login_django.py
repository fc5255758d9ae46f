"""A real framework's login: Django's admin (its login form with the CSRF token, its session
cookie, a changelist behind it), served by waitress on 127.0.0.1, crawled by the real service;
and `crawler preview` logging in for real without storing a session."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crawler.config.root import load_config
from crawler.run.result import RunResult
from crawler.service import Service
from tests.django_site.server import PRODUCTS, USER, DjangoSite
from tests.helpers import ROOT

PASSWORD = "Dj-Sentinel-Pass-5e8"


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoSite]:
    site = DjangoSite(tmp_path_factory.mktemp("django"), PASSWORD).start()
    yield site
    site.stop()


def once(cfg: Path) -> tuple[RunResult, CollectorRegistry]:
    registry = CollectorRegistry()
    [result] = asyncio.run(Service(load_config(cfg), registry).once())
    return result, registry


def logins(registry: CollectorRegistry, result: str) -> float | None:
    return registry.get_sample_value(
        "crawler_source_logins_total", {"source": "admin", "result": result}
    )


def admin_source(site: DjangoSite, password_file: Path) -> dict[str, Any]:
    return {
        "name": "admin",
        "every": "1h",
        "url": site.changelist,
        "items": "#result_list tbody tr",
        "fields": {"name": "th.field-name a::text", "price": "td.field-price::text"},
        "key": ["name"],
        "login": {
            "url": site.login_url,
            "username": USER,
            "password_file": str(password_file),
            "logged_in": "#logout-form",
        },
    }


def test_django_admin_changelist_behind_its_login(
    tmp_path: Path, django_site: DjangoSite, write_config: Callable[..., Path]
) -> None:
    password_file = tmp_path / "admin_password"
    password_file.write_text(PASSWORD + "\n")
    cfg = write_config(sources=[admin_source(django_site, password_file)])

    result, registry = once(cfg)
    assert result.ok and result.records == len(PRODUCTS), (result.error, result.errors)
    assert logins(registry, "ok") == 1
    cookies_file = tmp_path / "var" / "sessions" / "admin.cookies"
    assert "sessionid" in cookies_file.read_text()
    assert PASSWORD not in cookies_file.read_text()

    # The next run reuses the session: no login.
    result, registry = once(cfg)
    assert result.ok and result.records == len(PRODUCTS)
    assert logins(registry, "ok") == 0

    # Django forgets every session: the changelist redirects to the login page, the crawler
    # logs in again (once) and fetches the changelist again.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from django.contrib.sessions.models import Session; Session.objects.all().delete()",
        ],
        env=django_site.env,
        check=True,
    )
    result, registry = once(cfg)
    assert result.ok and result.records == len(PRODUCTS) and result.failed_pages == 0
    assert logins(registry, "ok") == 1

    # A wrong password (and no stored session): the run fails as `login`.
    (tmp_path / "var" / "sessions" / "admin.json").unlink()
    password_file.write_text("not-the-password\n")
    result, registry = once(cfg)
    assert not result.ok and result.error_kind == "login"
    assert "#logout-form" in (result.error or "")
    assert logins(registry, "failed") == 1


def test_preview_logs_in_for_real_and_stores_no_session(
    tmp_path: Path, django_site: DjangoSite, write_config: Callable[..., Path]
) -> None:
    password_file = tmp_path / "admin_password"
    password_file.write_text(PASSWORD)
    cfg = write_config(sources=[admin_source(django_site, password_file)])
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "preview", "-c", str(cfg), "admin"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"logged in as {USER}; session cookies: csrftoken, sessionid" in out
    for name, _ in PRODUCTS:
        assert name in out
    assert PASSWORD not in out
    assert not (tmp_path / "var" / "sessions").exists()
