"""Give the role groups their permissions on alerts."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def forwards(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    alerts = Permission.objects.filter(
        content_type__app_label="health",
        content_type__model__in=["alert", "alertdelivery", "alertpreference", "alertsubscriber"],
    )
    Group.objects.get_or_create(name="Channel admin")[0].permissions.add(*alerts)
    # Account managers read alerts and acknowledge them (a change), and set their own email preference.
    manager = Group.objects.get_or_create(name="Account manager")[0]
    manager.permissions.add(
        *alerts.filter(codename__in=["view_alert", "change_alert", "view_alertdelivery", "view_alertpreference"])
    )


class Migration(migrations.Migration):
    dependencies = [("health", "0003_alerts")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
