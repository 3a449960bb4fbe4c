"""factory_boy factories for the project's models."""

import datetime
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from prm.models import Activity, ActivityKind, Certification, Contact, Deal, Partner, PartnerMembership, Tier

T0 = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@vendor.example")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-1")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            for name in extracted:
                self.groups.add(Group.objects.get(name=name))
        if create:
            self.save()


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tier-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())
    rank = factory.Sequence(lambda n: n)


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner
        django_get_or_create = ("external_id",)

    external_id = factory.Sequence(lambda n: f"P-{n}")
    name = factory.Sequence(lambda n: f"Partner {n}")
    type = Partner.Type.RESELLER
    region = "EMEA"
    status = Partner.Status.ACTIVE
    quarterly_revenue_target = Decimal("100000")
    joined_on = datetime.date(2024, 1, 15)


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Contact {n}")
    email = factory.Sequence(lambda n: f"contact{n}@partner.example")


def kind(key: str) -> ActivityKind:
    return ActivityKind.objects.get(key=key)


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Activity

    partner = factory.SubFactory(PartnerFactory)
    kind = factory.LazyFunction(lambda: kind("portal_login"))
    occurred_at = T0
    quantity = 1
    source = "test"
    external_id = factory.Sequence(lambda n: f"evt-{n}")


class DealFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deal

    external_id = factory.Sequence(lambda n: f"D-{n}")
    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Deal {n}")
    amount = Decimal("10000")
    stage = Deal.Stage.REGISTERED
    registered_at = T0 - datetime.timedelta(days=30)
    closed_at = None


class CertificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Certification

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Cert {n}")
    role = Certification.Role.SALES
    earned_on = datetime.date(2026, 1, 1)
    expires_on = None


def membership(user, partner) -> PartnerMembership:
    return PartnerMembership.objects.create(user=user, partner=partner)


def now() -> datetime.datetime:
    return timezone.now()
