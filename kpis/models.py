"""Records of the KPI layer: custom KPIs, targets, closed periods' values, business reviews, action items, tier changes."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from prm.models import ActivityKind, Partner, Tier

period_validator = RegexValidator(r"^\d{4}-Q[1-4]$", "Use a year and quarter, e.g. 2026-Q3.")
# Quarters and months (kpis.periods.PERIOD_PATTERN).
any_period_validator = RegexValidator(
    r"^\d{4}-(Q[1-4]|0[1-9]|1[0-2])$", "Use a year and quarter (2026-Q3) or a year and month (2026-07)."
)


class KpiCategory(models.TextChoices):
    ENGAGEMENT = "engagement"
    ENABLEMENT = "enablement"
    PIPELINE = "pipeline"
    INCENTIVE = "incentive"
    RELATIONSHIP = "relationship"
    PROGRAM = "program"


class KpiUnit(models.TextChoices):
    COUNT = "count"
    RATIO = "ratio"
    AMOUNT = "amount"
    DAYS = "days"
    RATING = "rating"


class Better(models.TextChoices):
    HIGHER = "higher", "Higher is better"
    LOWER = "lower", "Lower is better"


class CustomKpi(models.Model):
    """A KPI defined without code: an aggregate of one activity kind, optionally divided by another."""

    class Aggregate(models.TextChoices):
        COUNT = "count", "Count (sum of quantity)"
        SUM = "sum", "Sum of value"
        AVG = "avg", "Average value"
        MIN = "min", "Lowest value"
        MAX = "max", "Highest value"
        LATEST = "latest", "Latest value"

    key = models.SlugField(max_length=50, unique=True, help_text="Used by scoring models and the API.")
    label = models.CharField(max_length=100)
    category = models.CharField(max_length=20, choices=KpiCategory.choices)
    better = models.CharField(max_length=6, choices=Better.choices, default=Better.HIGHER)
    description = models.CharField(
        max_length=300, blank=True, help_text="One plain sentence a partner understands; generated when blank."
    )
    numerator_kind = models.ForeignKey(ActivityKind, on_delete=models.PROTECT, related_name="custom_kpis_counted")
    numerator_aggregate = models.CharField(max_length=10, choices=Aggregate.choices, default=Aggregate.COUNT)
    denominator_kind = models.ForeignKey(
        ActivityKind,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="custom_kpis_dividing",
        help_text="Optional: divide by an aggregate of this kind (set both kind and aggregate, or neither).",
    )
    denominator_aggregate = models.CharField(max_length=10, choices=Aggregate.choices, null=True, blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive KPIs leave the catalogue.")
    history = HistoricalRecords()

    class Meta:
        verbose_name = "custom KPI"
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=Q(denominator_kind__isnull=True, denominator_aggregate__isnull=True)
                | Q(denominator_kind__isnull=False, denominator_aggregate__isnull=False),
                name="custom_kpi_denominator_complete",
            ),
            models.CheckConstraint(
                condition=Q(numerator_aggregate__in=["count", "sum", "avg", "min", "max", "latest"]),
                name="custom_kpi_numerator_aggregate_known",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        # Imported here: the registry reads this module, so this module cannot read it at import time.
        from kpis.registry import BUILT_IN_KPIS

        errors = {}
        if self.key in BUILT_IN_KPIS:
            errors["key"] = f"'{self.key}' is a built-in KPI; choose another key."
        if (self.denominator_kind_id is None) != (not self.denominator_aggregate):
            message = "Give both the denominator kind and its aggregate, or neither."
            errors["denominator_kind" if self.denominator_kind_id is None else "denominator_aggregate"] = message
        if errors:
            raise ValidationError(errors)


class BusinessReview(models.Model):
    """A periodic (usually quarterly) business review held with a partner."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="business_reviews")
    period = models.CharField(
        max_length=7, validators=[period_validator], help_text="The quarter reviewed, e.g. 2026-Q3."
    )
    held_on = models.DateField()
    attendees = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-held_on", "-id"]
        indexes = [models.Index(fields=["partner", "held_on"], name="review_partner_held_on")]

    def __str__(self) -> str:
        return f"{self.period} review ({self.held_on})"


class ActionItem(models.Model):
    """Something agreed to do for a partner, from a business review or an alert."""

    class Status(models.TextChoices):
        OPEN = "open"
        DONE = "done"
        CANCELLED = "cancelled"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="action_items")
    review = models.ForeignKey(
        BusinessReview, null=True, blank=True, on_delete=models.CASCADE, related_name="action_items"
    )
    description = models.CharField(max_length=500)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="action_items"
    )
    due_on = models.DateField(null=True, blank=True)
    kpi = models.CharField(max_length=50, blank=True, help_text="The KPI this item should move, if any.")
    target_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_on", "id"]
        indexes = [models.Index(fields=["partner", "status"], name="action_item_partner_status")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="open") | Q(completed_at__isnull=True), name="action_item_open_not_completed"
            )
        ]

    def __str__(self) -> str:
        return self.description[:60]

    def clean(self) -> None:
        if self.review_id and self.partner_id and self.review.partner_id != self.partner_id:
            raise ValidationError({"review": "This review was held with another partner."})

    def set_status(self, status: str, *, at) -> None:
        """Move to a status; leaving "open" stamps completed_at (once), reopening clears it."""
        self.status = status
        if status == self.Status.OPEN:
            self.completed_at = None
        elif self.completed_at is None:
            self.completed_at = at


class KpiTarget(models.Model):
    """What a KPI should reach in a period: for every partner of a tier, or for one partner (which wins)."""

    kpi = models.CharField(max_length=50, help_text="Key of a KPI of the catalogue.")
    period = models.CharField(
        max_length=7, validators=[any_period_validator], help_text="A quarter (2026-Q3) or a month (2026-07)."
    )
    tier = models.ForeignKey(
        Tier,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="kpi_targets",
        help_text="The default target of this tier's partners.",
    )
    partner = models.ForeignKey(
        Partner,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="kpi_targets",
        help_text="A target for this partner alone; overrides its tier's.",
    )
    value = models.DecimalField(max_digits=16, decimal_places=4)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "KPI target"
        ordering = ["-period", "kpi", "tier__rank", "partner__name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(tier__isnull=True, partner__isnull=False) | Q(tier__isnull=False, partner__isnull=True),
                name="kpi_target_tier_xor_partner",
            ),
            models.UniqueConstraint(
                fields=["kpi", "period", "tier"], condition=Q(tier__isnull=False), name="kpi_target_unique_tier"
            ),
            models.UniqueConstraint(
                fields=["kpi", "period", "partner"],
                condition=Q(partner__isnull=False),
                name="kpi_target_unique_partner",
            ),
        ]
        indexes = [models.Index(fields=["period", "kpi"], name="kpi_target_period_kpi")]

    def __str__(self) -> str:
        return f"{self.kpi} {self.period}: {self.value}"

    def clean(self) -> None:
        from kpis.registry import kpi_catalogue

        errors = {}
        if (self.tier_id is None) == (self.partner_id is None):
            errors["partner"] = "Give a tier or a partner, not both and not neither."
        if self.kpi and self.kpi not in kpi_catalogue():
            errors["kpi"] = f"Unknown KPI '{self.kpi}'."
        if errors:
            raise ValidationError(errors)


class KpiPeriodSnapshot(models.Model):
    """A partner's KPI values for a closed period, stored once so that past periods stay as they were."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="kpi_period_snapshots")
    period = models.CharField(max_length=7, validators=[any_period_validator])
    as_of = models.DateTimeField(help_text="The period's last instant, as of which the values were measured.")
    values = models.JSONField(default=dict, help_text="KPI key -> raw value (null when undefined).")
    # What tier reviews read besides KPIs, as they stood when the period closed.
    certifications = models.JSONField(default=dict, help_text="Role -> active certifications at as_of.")
    health_score = models.FloatField(null=True, blank=True, help_text="The partner's health score when stored.")
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "KPI period snapshot"
        ordering = ["-period", "partner_id"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "period"], name="kpi_period_snapshot_unique"),
        ]
        indexes = [models.Index(fields=["period"], name="kpi_period_snapshot_period")]

    def __str__(self) -> str:
        return f"{self.period} of partner {self.partner_id}"


class TierChange(models.Model):
    """A partner's move from one tier to another, approved by a person; the program's record of it."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="tier_changes")
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="tier_changes_approved"
    )
    # Kept even if the account is deleted later: the record says who approved.
    approved_by_name = models.CharField(max_length=150)
    approved_at = models.DateTimeField()
    assessment = models.JSONField(
        default=dict, blank=True, help_text="The qualification status shown when the change was approved."
    )

    class Meta:
        ordering = ["-approved_at", "-id"]
        indexes = [models.Index(fields=["partner", "approved_at"], name="tier_change_partner_time")]

    def __str__(self) -> str:
        return f"{self.partner_id}: {self.from_tier_id} -> {self.to_tier_id} ({self.approved_at:%Y-%m-%d})"


class ReviewReminder(models.Model):
    """One reminder to a partner's owner that no business review was held for too long.

    One row per partner and overdue stretch (`due_since`), so a reminder is sent once however often the
    task runs; a sender claims rows with a conditional update before sending.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "Failed for good"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="review_reminders")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_reminders")
    due_since = models.DateField(help_text="The day the partner became overdue for a business review.")
    last_review_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    claim = models.CharField(max_length=32, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-due_since", "id"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "due_since"], name="review_reminder_once_per_stretch"),
        ]
        indexes = [models.Index(fields=["status", "owner"], name="review_reminder_pending")]

    def __str__(self) -> str:
        return f"review reminder for partner {self.partner_id} (due since {self.due_since})"
