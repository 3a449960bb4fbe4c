"""Seed the default scoring model, the recompute lock row, and the groups' permissions on health."""

from decimal import Decimal

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Channel practice: pipeline weighs most, enablement next, engagement lighter.
# (kpi, weight, method, target, lower, upper, direction, missing)
DEFAULT_COMPONENTS = [
    ("pipeline_coverage", 15, "target", 3, None, None, "", "exclude"),
    ("deals_registered", 10, "target", 6, None, None, "", "zero"),
    ("win_rate", 8, "range", None, "0.1", "0.5", "", "exclude"),
    ("pipeline_trend", 7, "range", None, "-0.5", "0.5", "", "exclude"),
    ("active_certifications", 10, "target", 4, None, None, "", "zero"),
    ("certification_role_coverage", 8, "target", 1, None, None, "", "zero"),
    ("training_completion_rate", 7, "target", "0.8", None, None, "", "exclude"),
    ("activity_intensity", 8, "target", 60, None, None, "", "zero"),
    ("email_open_rate", 4, "range", None, "0.05", "0.4", "", "exclude"),
    ("events_attended", 3, "target", 2, None, None, "", "zero"),
    ("meetings_held", 5, "target", 3, None, None, "", "zero"),
    ("sentiment", 5, "range", None, 3, 9, "", "exclude"),
    ("mdf_utilization", 5, "target", "0.9", None, None, "", "exclude"),
    ("days_since_business_review", 5, "target", 90, None, None, "", "zero"),
]


def forwards(apps, schema_editor):
    ScoringModel = apps.get_model("health", "ScoringModel")
    ScoringComponent = apps.get_model("health", "ScoringComponent")
    RecomputeLock = apps.get_model("health", "RecomputeLock")
    RecomputeLock.objects.get_or_create(name="scores")
    model, created = ScoringModel.objects.get_or_create(
        name="Standard partner health",
        defaults={
            "description": "Pipeline first, then enablement, engagement, relationship and program hygiene.",
            "is_active": True,
            "priority": 100,
        },
    )
    if created:
        for kpi, weight, method, target, lower, upper, direction, missing in DEFAULT_COMPONENTS:
            ScoringComponent.objects.create(
                model=model, kpi=kpi, weight=Decimal(weight), method=method,
                target=None if target is None else Decimal(str(target)),
                lower=None if lower is None else Decimal(str(lower)),
                upper=None if upper is None else Decimal(str(upper)),
                direction=direction, missing=missing,
            )

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    health = Permission.objects.filter(content_type__app_label="health")
    beat = Permission.objects.filter(content_type__app_label="django_celery_beat")
    admin_group, _ = Group.objects.get_or_create(name="Channel admin")
    admin_group.permissions.add(*health, *beat)
    manager_group, _ = Group.objects.get_or_create(name="Account manager")
    manager_group.permissions.add(*health.filter(codename__startswith="view_"))


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0001_initial"),
        ("prm", "0002_activity_kinds_and_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
