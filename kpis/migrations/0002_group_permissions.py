"""Give the role groups their permissions on the kpis app's records."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Account managers run business reviews and follow up their action items; custom KPIs are the admins'.
MANAGER_CODENAMES = [
    f"{action}_{model}" for action in ("view", "add", "change") for model in ("businessreview", "actionitem")
]


def forwards(apps, schema_editor):
    # Permissions are normally made after migrations; make them now so the groups can hold them.
    app_config = apps.get_app_config("kpis")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    kpis_perms = Permission.objects.filter(content_type__app_label="kpis")
    admin_group, _ = Group.objects.get_or_create(name="Channel admin")
    manager_group, _ = Group.objects.get_or_create(name="Account manager")
    admin_group.permissions.add(*kpis_perms)
    manager_group.permissions.add(*kpis_perms.filter(codename__in=MANAGER_CODENAMES))


def backwards(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name__in=["Channel admin", "Account manager"]):
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="kpis"))


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0001_initial"),
        ("prm", "0002_activity_kinds_and_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
