"""The partner program's core records: tiers, partners, contacts and their signals."""

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from simple_history.models import HistoricalRecords

external_id_validator = RegexValidator(r"^[A-Za-z0-9._-]+$", "Use only letters, digits, '.', '_' and '-'.")


class Tier(models.Model):
    """A level of the partner program (e.g. Registered, Silver, Gold, Platinum) and what it requires."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(
        default=0, help_text="Higher rank is a higher tier; used to order tiers and to find upgrades."
    )
    min_sales_certifications = models.PositiveSmallIntegerField(default=0)
    min_technical_certifications = models.PositiveSmallIntegerField(default=0)
    min_delivery_certifications = models.PositiveSmallIntegerField(default=0)
    min_quarterly_revenue = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Partner-sourced revenue a quarter needed to hold this tier.",
    )
    min_health_score = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["rank", "name"]

    def __str__(self) -> str:
        return self.name


class Partner(models.Model):
    class Type(models.TextChoices):
        RESELLER = "reseller"
        DISTRIBUTOR = "distributor"
        MSP = "msp", "MSP"
        REFERRAL = "referral"
        ALLIANCE = "alliance"

    class Status(models.TextChoices):
        ONBOARDING = "onboarding"
        ACTIVE = "active"
        PROBATION = "probation"
        EXITED = "exited"

    class Band(models.TextChoices):
        HEALTHY = "healthy"
        WATCH = "watch"
        AT_RISK = "at_risk", "At risk"
        NO_DATA = "no_data", "No data"

    external_id = models.CharField(
        max_length=64,
        unique=True,
        validators=[external_id_validator],
        help_text="The partner's id in the vendor's CRM; used in the API and imports.",
    )
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=Type.choices)
    # No single-column indexes on tier, owner and health_band: the (tier, type), (owner, health_score) and
    # (health_band, health_score) indexes below serve them, and the daily recompute rewrites every partner
    # row, each index of the table included.
    tier = models.ForeignKey(
        Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="partners", db_index=False
    )
    region = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_partners",
        help_text="The channel account manager.",
        db_index=False,
    )
    quarterly_revenue_target = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    joined_on = models.DateField(null=True, blank=True)
    agreement_start = models.DateField(null=True, blank=True)
    agreement_end = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Current health, written by the health app's recompute so that lists need no join.
    # health_model_id is a plain integer: prm sits below health and does not reference it.
    health_score = models.FloatField(null=True, blank=True, editable=False)
    health_band = models.CharField(max_length=10, choices=Band.choices, default=Band.NO_DATA, editable=False)
    health_trend = models.FloatField(null=True, blank=True, editable=False)
    health_as_of = models.DateTimeField(null=True, blank=True, editable=False)
    health_model_id = models.PositiveIntegerField(null=True, blank=True, editable=False)

    history = HistoricalRecords(
        excluded_fields=["health_score", "health_band", "health_trend", "health_as_of", "health_model_id", "updated_at"]
    )

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["health_score"]),
            models.Index(fields=["owner", "health_score"]),
            models.Index(fields=["tier", "type"]),
            models.Index(fields=["name"], name="partner_name"),
            # The dashboards: steepest declines, and the score chart by band.
            models.Index(fields=["health_trend"], name="partner_trend"),
            models.Index(fields=["health_band", "health_score"], name="partner_band_score"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quarterly_revenue_target__isnull=True) | Q(quarterly_revenue_target__gte=0),
                name="partner_target_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(agreement_start__isnull=True)
                | Q(agreement_end__isnull=True)
                | Q(agreement_end__gte=F("agreement_start")),
                name="partner_agreement_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"


class Contact(models.Model):
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField()
    role = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["partner", "email"]
        constraints = [models.UniqueConstraint(fields=["partner", "email"], name="contact_unique_email_per_partner")]

    def __str__(self) -> str:
        return self.name or self.email


class PartnerMembership(models.Model):
    """Links a login to the partner it belongs to: a partner user sees only that partner."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_membership")
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="memberships")

    def __str__(self) -> str:
        return f"{self.user} @ {self.partner}"


class ActivityKind(models.Model):
    class Category(models.TextChoices):
        ENGAGEMENT = "engagement"
        ENABLEMENT = "enablement"
        INCENTIVE = "incentive"
        RELATIONSHIP = "relationship"
        OTHER = "other"

    class Unit(models.TextChoices):
        COUNT = "count"
        AMOUNT = "amount"
        RATING = "rating"

    key = models.SlugField(max_length=50, unique=True, help_text="Used in the API, imports and KPI definitions.")
    label = models.CharField(max_length=100)
    category = models.CharField(max_length=20, choices=Category.choices)
    unit = models.CharField(
        max_length=10,
        choices=Unit.choices,
        default=Unit.COUNT,
        help_text="count: events carry no value; amount: value is money; rating: value is 0-10.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["category", "key"]

    def __str__(self) -> str:
        return self.key


class Activity(models.Model):
    """One signal event of a partner (or several of the same kind, counted by quantity)."""

    # No single-column indexes on partner and kind: (partner, occurred_at) and (kind, occurred_at) below
    # serve every lookup by either, and each index on this, the largest table, slows every ingest.
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="activities", db_index=False)
    kind = models.ForeignKey(ActivityKind, on_delete=models.PROTECT, related_name="activities", db_index=False)
    occurred_at = models.DateTimeField()
    quantity = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    source = models.CharField(max_length=64)
    external_id = models.CharField(max_length=128)
    # Indexed only where set (below): most events name no contact, and an ingest then maintains nothing here.
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="activities", db_index=False
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "activities"
        constraints = [
            # external_id first: the same index answers lookups by external_id alone (support staff search
            # events by their id in the source system), so the table needs no second index on it.
            models.UniqueConstraint(fields=["external_id", "source"], name="activity_unique_external_id_source"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="activity_quantity_positive"),
        ]
        indexes = [
            models.Index(fields=["partner", "occurred_at"], name="activity_partner_time"),
            models.Index(fields=["kind", "occurred_at"], name="activity_kind_time"),
            # Deleting a contact sets its events' contact to null: found through this, not a scan.
            models.Index(fields=["contact"], condition=Q(contact__isnull=False), name="activity_contact_set"),
        ]

    def __str__(self) -> str:
        return f"{self.kind_id} x{self.quantity} @ {self.occurred_at:%Y-%m-%d}"


class Deal(models.Model):
    """A deal registration and where it stands."""

    class Stage(models.TextChoices):
        REGISTERED = "registered"
        APPROVED = "approved"
        REJECTED = "rejected"
        WON = "won"
        LOST = "lost"

    CLOSED_STAGES = (Stage.WON, Stage.LOST)

    external_id = models.CharField(max_length=128, unique=True, validators=[external_id_validator])
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="deals")
    name = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.REGISTERED)
    registered_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="deal_amount_not_negative"),
            models.CheckConstraint(
                condition=(Q(stage__in=["won", "lost"]) & Q(closed_at__isnull=False))
                | (~Q(stage__in=["won", "lost"]) & Q(closed_at__isnull=True)),
                name="deal_closed_at_iff_closed_stage",
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("registered_at")),
                name="deal_closed_after_registered",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "registered_at"], name="deal_partner_registered"),
            models.Index(fields=["partner", "closed_at"], name="deal_partner_closed"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"


class Certification(models.Model):
    class Role(models.TextChoices):
        SALES = "sales"
        TECHNICAL = "technical"
        DELIVERY = "delivery"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="certifications")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="certifications"
    )
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=20, choices=Role.choices)
    earned_on = models.DateField()
    expires_on = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_on__isnull=True) | Q(expires_on__gt=F("earned_on")),
                name="certification_expires_after_earned",
            ),
            # The natural key: re-sending the same certification updates it instead of adding one.
            # Two partial indexes so that "no contact" is one key too (on SQLite as on PostgreSQL).
            models.UniqueConstraint(
                fields=["partner", "name", "role", "earned_on", "contact"],
                condition=Q(contact__isnull=False),
                name="certification_key_with_contact",
            ),
            models.UniqueConstraint(
                fields=["partner", "name", "role", "earned_on"],
                condition=Q(contact__isnull=True),
                name="certification_key_without_contact",
            ),
        ]
        indexes = [models.Index(fields=["partner", "role", "earned_on"], name="cert_partner_role_earned")]

    def __str__(self) -> str:
        return f"{self.name} ({self.role})"
