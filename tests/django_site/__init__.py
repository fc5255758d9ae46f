"""A real Django project for the login tests: the admin's login form (CSRF token, session
cookie) in front of a changelist of `shop.Product`, served by waitress on 127.0.0.1
(tests/integration/test_login_django.py). Its database is the SQLite file named by
`DJANGO_SITE_DB`."""
