"""The project's WSGI application (waitress serves it)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_site.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
