"""Shared fixtures: named users of every role, two partners, API clients; service markers."""

import os

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from prm.roles import ACCOUNT_MANAGER, CHANNEL_ADMIN, PARTNER_USER
from tests.factories import PartnerFactory, UserFactory, membership


def pytest_configure(config):
    from django.conf import settings

    # Production serves hashed files after collectstatic; tests render pages without collecting first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The named users are made with passwords; the production hasher's cost is not what is tested.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_collection_modifyitems(config, items):
    no_postgres = os.environ.get("PRM_TEST_POSTGRES") != "1"
    no_redis = not os.environ.get("PRM_TEST_REDIS")
    for item in items:
        if no_postgres and item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.skip(reason="PostgreSQL unreachable (outside CI): skipped"))
        if no_redis and item.get_closest_marker("redis"):
            item.add_marker(pytest.mark.skip(reason="Redis unreachable (outside CI): skipped"))


@pytest.fixture
def channel_admin(db):
    return UserFactory(username="admin", is_staff=True, groups=[CHANNEL_ADMIN])


@pytest.fixture
def manager(db):
    return UserFactory(username="manager", is_staff=True, groups=[ACCOUNT_MANAGER])


@pytest.fixture
def partner_a(db, manager):
    return PartnerFactory(external_id="P-A", name="Alpha Resellers", owner=manager)


@pytest.fixture
def partner_b(db):
    return PartnerFactory(external_id="P-B", name="Beta Systems")


@pytest.fixture
def partner_user_a(db, partner_a):
    user = UserFactory(username="alice-at-a", groups=[PARTNER_USER])
    membership(user, partner_a)
    return user


@pytest.fixture
def partner_user_b(db, partner_b):
    user = UserFactory(username="bob-at-b", groups=[PARTNER_USER])
    membership(user, partner_b)
    return user


@pytest.fixture
def api_client_for():
    """api_client_for(user) -> an APIClient authenticated with the user's token."""

    def make(user) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def admin_api(api_client_for, channel_admin):
    return api_client_for(channel_admin)


class SmtpRecorder:
    """What the in-process SMTP server received; `refuse` queues answers to the next DATA commands."""

    def __init__(self):
        self.messages = []
        self.refuse: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse.pop(0)
        self.messages.append(envelope)
        return "250 Message accepted"

    def subjects(self) -> list[str]:
        import email

        return [email.message_from_bytes(m.content)["Subject"] for m in self.messages]


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server (aiosmtpd) on a free local port, with Django's SMTP backend pointed at it."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recorder = SmtpRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    recorder.port = port
    yield recorder
    controller.stop()
