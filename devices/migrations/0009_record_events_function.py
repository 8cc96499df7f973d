"""Queued ingestion's batch write as a PL/pgSQL function (PostgreSQL only): herald_record_events.

`manage.py herald_ingest` (devices/ingest.py) applies a batch of queued events in one round
trip. The function first takes the advisory lock of every token in the batch, in the one
global sorted order every writer uses (devices.services._lock_keys: the caller passes them
sorted), so that it can never deadlock with a direct event, a refresh or an erasure. Then,
in the documents' order (the stream's), it skips a document whose (tenant, fingerprint)
event is stored already (an entry delivered again after a writer died between its commit and
its acknowledgement must not put an old device or user state back over a newer one) and
applies the others with herald_record_event (migrations 0006, 0008), whose own lock step
gets an empty array. Its rows are the 0-based positions of the documents it applied.

SQLite applies the same documents through the ORM (devices/ingest.py).
"""

from django.db import migrations

RECORD_EVENTS = """
CREATE OR REPLACE FUNCTION herald_record_events(lock_keys bigint[], docs jsonb)
RETURNS SETOF integer LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lock_key bigint;
    doc jsonb;
    n integer;
BEGIN
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    FOR doc, n IN
        SELECT d.value, (d.ordinality - 1)::integer FROM jsonb_array_elements(docs) WITH ORDINALITY AS d
        ORDER BY d.ordinality
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM devices_event e
            WHERE e.tenant_id = (doc->>'tenant')::bigint AND e.fingerprint = doc->>'fingerprint'
        );
        PERFORM herald_record_event('{}'::bigint[], doc);
        RETURN NEXT n;
    END LOOP;
END
$fn$
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(RECORD_EVENTS, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP FUNCTION IF EXISTS herald_record_events(bigint[], jsonb)", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0008_write_only_changes"),
    ]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
