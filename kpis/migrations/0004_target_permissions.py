"""Give the role groups their permissions on targets, period snapshots, tier changes and review reminders."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

NEW_MODELS = ("kpitarget", "kpiperiodsnapshot", "tierchange", "reviewreminder")
# Account managers read targets, closed periods and tier changes; setting targets and approving a tier
# change are the channel admins'.
MANAGER_CODENAMES = ["view_kpitarget", "view_kpiperiodsnapshot", "view_tierchange"]


def forwards(apps, schema_editor):
    app_config = apps.get_app_config("kpis")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    new_perms = Permission.objects.filter(
        content_type__app_label="kpis", content_type__model__in=[*NEW_MODELS, "historicalkpitarget"]
    )
    admin_group, _ = Group.objects.get_or_create(name="Channel admin")
    manager_group, _ = Group.objects.get_or_create(name="Account manager")
    admin_group.permissions.add(*new_perms)
    manager_group.permissions.add(*new_perms.filter(codename__in=MANAGER_CODENAMES))


def backwards(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    perms = Permission.objects.filter(
        content_type__app_label="kpis", content_type__model__in=[*NEW_MODELS, "historicalkpitarget"]
    )
    for group in Group.objects.filter(name__in=["Channel admin", "Account manager"]):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):
    dependencies = [("kpis", "0003_targets_snapshots_tier_changes")]

    operations = [migrations.RunPython(forwards, backwards)]
