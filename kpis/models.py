"""Records of the KPI layer: admin-defined custom KPIs, business reviews and their action items."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from prm.models import ActivityKind, Partner

period_validator = RegexValidator(r"^\d{4}-Q[1-4]$", "Use a year and quarter, e.g. 2026-Q3.")


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
