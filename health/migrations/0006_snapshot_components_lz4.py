"""Compress new snapshot explanations with LZ4 instead of PostgreSQL's default pglz.

A snapshot's component list (about 2 KB of JSON) is compressed as it is written; a recompute of 100,000
partners writes 100,000 of them, and pglz took about 2 s more of it than LZ4 on the benchmark machine
(docs/benchmarks.md). Rows already stored keep their compression. Skipped on SQLite and on a PostgreSQL
built without LZ4.
"""

from django.db import migrations

COLUMNS = ("components", "category_scores")


def set_compression(schema_editor, method: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT %s = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'", [method])
        row = cursor.fetchone()
    if not row or not row[0]:
        return
    for column in COLUMNS:
        schema_editor.execute(f"ALTER TABLE health_scoresnapshot ALTER COLUMN {column} SET COMPRESSION {method}")


def forwards(apps, schema_editor):
    set_compression(schema_editor, "lz4")


def backwards(apps, schema_editor):
    set_compression(schema_editor, "pglz")


class Migration(migrations.Migration):
    dependencies = [("health", "0005_calibration")]

    operations = [migrations.RunPython(forwards, backwards)]
