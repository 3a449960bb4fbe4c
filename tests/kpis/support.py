"""Helpers of the kpis tests: a fixed instant A, its window, and one-line record makers."""

import datetime
from decimal import Decimal

from kpis.models import BusinessReview
from kpis.registry import kpis_compute
from prm.models import Partner
from tests.factories import ActivityFactory, CertificationFactory, DealFactory, kind

A = datetime.datetime(2026, 10, 1, 12, 0, tzinfo=datetime.UTC)
W = 90
START = A - datetime.timedelta(days=W)  # A - W: outside the window
PREVIOUS_START = A - datetime.timedelta(days=2 * W)
SECOND = datetime.timedelta(seconds=1)
DAY = datetime.timedelta(days=1)
DATE_A = A.date()


def activity(partner, kind_key: str, at: datetime.datetime, quantity: int = 1, value=None):
    return ActivityFactory(
        partner=partner,
        kind=kind(kind_key),
        occurred_at=at,
        quantity=quantity,
        value=None if value is None else Decimal(str(value)),
    )


def deal(partner, *, amount, stage="registered", registered_at, closed_at=None):
    return DealFactory(
        partner=partner, amount=Decimal(str(amount)), stage=stage, registered_at=registered_at, closed_at=closed_at
    )


def certification(partner, *, role="sales", earned_on, expires_on=None):
    return CertificationFactory(partner=partner, role=role, earned_on=earned_on, expires_on=expires_on)


def review(partner, *, held_on, period="2026-Q3"):
    return BusinessReview.objects.create(partner=partner, period=period, held_on=held_on)


def compute(keys, *, partners=None, as_of=A, window_days=W):
    return kpis_compute(
        keys=keys,
        as_of=as_of,
        window_days=window_days,
        partners=Partner.objects.all() if partners is None else partners,
    )


def value_of(key: str, partner, **kwargs):
    return compute([key], **kwargs)[key][partner.id]
