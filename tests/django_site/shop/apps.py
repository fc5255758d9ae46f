from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.django_site.shop"
    label = "shop"
