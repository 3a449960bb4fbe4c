"""Fixtures of the API-wide tests."""

import pytest

from tests.api.program import build_program


@pytest.fixture
def program(partner_a, partner_b, manager, channel_admin, partner_user_a, partner_user_b) -> dict:
    return build_program(partner_a, partner_b)
