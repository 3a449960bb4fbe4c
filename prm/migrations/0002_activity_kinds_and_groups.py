"""Seed the shipped activity kinds (SCORING.md "Inputs") and the three role groups."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

KINDS = [
    ("portal_login", "Portal login", "engagement", "count"),
    ("content_view", "Content view", "engagement", "count"),
    ("email_sent", "Email sent", "engagement", "count"),
    ("email_opened", "Email opened", "engagement", "count"),
    ("event_attended", "Event attended", "engagement", "count"),
    ("campaign_joined", "Campaign joined", "engagement", "count"),
    ("training_assigned", "Training assigned", "enablement", "count"),
    ("training_completed", "Training completed", "enablement", "count"),
    ("mdf_allocated", "MDF allocated", "incentive", "amount"),
    ("mdf_claimed", "MDF claimed", "incentive", "amount"),
    ("rebate_accrued", "Rebate accrued", "incentive", "amount"),
    ("spiff_claimed", "SPIFF claimed", "incentive", "amount"),
    ("meeting_held", "Meeting held", "relationship", "count"),
    ("sentiment_recorded", "Sentiment recorded", "relationship", "rating"),
]

# Account managers look after partners and their data; configuration (tiers, kinds) is the admins'.
MANAGER_MODELS = {"partner", "contact", "activity", "deal", "certification", "partnermembership"}


def forwards(apps, schema_editor):
    ActivityKind = apps.get_model("prm", "ActivityKind")
    for key, label, category, unit in KINDS:
        ActivityKind.objects.update_or_create(key=key, defaults={"label": label, "category": category, "unit": unit})

    # Permissions are normally made after migrations; make them now so the groups can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin_group, _ = Group.objects.get_or_create(name="Channel admin")
    manager_group, _ = Group.objects.get_or_create(name="Account manager")
    Group.objects.get_or_create(name="Partner user")

    prm_perms = Permission.objects.filter(content_type__app_label="prm")
    admin_group.permissions.add(*prm_perms)
    admin_group.permissions.add(*Permission.objects.filter(content_type__app_label="auth", content_type__model="user"))
    manager_group.permissions.add(*prm_perms.filter(content_type__model__in=MANAGER_MODELS))
    manager_group.permissions.add(*prm_perms.filter(codename__in=["view_tier", "view_activitykind"]))


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["Channel admin", "Account manager", "Partner user"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("prm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
