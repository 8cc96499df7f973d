"""Drop the single-column tenant indexes of users, devices and events.

Each table's unique constraint and other indexes lead with tenant_id already, so they serve
every lookup and cascade by tenant; the extra index only cost each POST /events an index
insertion for its event and one for its device's new row version (never HOT: last_seen_at
is indexed), and every new user one more.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0006_write_functions'),
        ('tenants', '0005_marketing_limits'),
    ]

    operations = [
        migrations.AlterField(
            model_name='appuser',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='app_users', to='tenants.tenant'),
        ),
        migrations.AlterField(
            model_name='device',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='devices', to='tenants.tenant'),
        ),
        migrations.AlterField(
            model_name='event',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='tenants.tenant'),
        ),
    ]
