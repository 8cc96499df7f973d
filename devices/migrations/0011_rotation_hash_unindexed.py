"""Token rotations: old_token_hash loses its two indexes (the plain one and, on PostgreSQL, the
varchar_pattern_ops one Django adds for LIKE).

Nothing looks rotations up by old_token_hash alone: the one lookup (a retried refresh) is among
one device's rotations, which the device_id index finds. Every refresh wrote both indexes for
nothing: 1,933 -> 1,490 bytes of WAL per refresh (bench/refresh_batch.py). Dropping an index is
quick whatever the table's size; backwards, they are built again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0010_record_events_set_based"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tokenrotation",
            name="old_token_hash",
            field=models.CharField(max_length=64),
        ),
    ]
