"""`DjangoSite`: the test project migrated into a fresh SQLite file, with a superuser and a
few products, served by waitress (a real WSGI server) in a child process on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, free_port, wait_for

USER = "crawler"
PRODUCTS = [("Anvil", "12.50"), ("Rope", "3.20"), ("Lantern", "19.99")]

_SEED = f"""
import django
django.setup()
from tests.django_site.shop.models import Product
for name, price in {PRODUCTS!r}:
    Product.objects.create(name=name, price=price)
"""


class DjangoSite:
    """The admin at `base + /admin/`; the changelist at `changelist`; `stop()` ends it."""

    def __init__(self, directory: Path, password: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.login_url = f"{self.base}/admin/login/"
        self.changelist = f"{self.base}/admin/shop/product/"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "tests.django_site.settings",
            "DJANGO_SITE_DB": str(directory / "django.sqlite"),
            "DJANGO_SUPERUSER_PASSWORD": password,
        }
        self.log = directory / "waitress.log"
        self._proc: subprocess.Popen[Any] | None = None

    def _django(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "django", *args], env=self.env, check=True, capture_output=True
        )

    def start(self) -> DjangoSite:
        self._django("migrate", "--noinput")
        self._django("createsuperuser", "--noinput", "--username", USER, "--email", "c@example.org")
        subprocess.run([sys.executable, "-c", _SEED], env=self.env, check=True)
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "waitress",
                    f"--listen=127.0.0.1:{self.port}",
                    "--threads=2",
                    "tests.django_site.wsgi:application",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, timeout=30)
        return self

    def _answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.login_url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
