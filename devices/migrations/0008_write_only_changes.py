"""POST /events writes its user's and device's rows only when something in them changes.

Before, every event gave its device and its user a new row version: the device's last_seen_at
is indexed (device_last_seen_idx), so the update was never HOT and wrote the device's seven
index entries again, and the user's row (its unique index, its segment indexes) the same. Now
the function reads the device, and writes a row only when a field the event carries differs
from what the row holds, or when its last_seen_at is older than the time the caller passes as
``seen_since`` (devices.services.LAST_SEEN_GRANULARITY before now): last_seen_at is kept to
within that granularity, not to the event.

The statements stay in the function (one round trip, plans cached per connection); each takes
a fresh snapshot after the token's advisory lock. The named user is read FOR KEY SHARE, the lock
the event's foreign key check would take anyway, so a concurrent erasure waits for this
transaction instead of deleting the user between the read and the event's insert; a user not
there yet is inserted with ON CONFLICT as before (two first sightings of one user). The device
is updated with a WHERE that re-checks the latest row version, so a deactivation committed
after the read is still undone by this event, as before.

SQLite keeps the ORM path (devices/services.py, _record_event_portable), with the same rule.
"""

from django.db import migrations

RECORD_EVENT = """
CREATE OR REPLACE FUNCTION herald_record_event(
    lock_keys bigint[], event jsonb, OUT recorded_device bigint, OUT recorded_user bigint
) LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lock_key bigint;
    p_tenant bigint := (event->>'tenant')::bigint;
    p_token_hash text := event->>'token_hash';
    p_app_user_id text := event->>'app_user_id';
    p_anonymous boolean := (event->>'anonymous')::boolean;
    p_language text := event->>'language';
    p_country text := event->>'country';
    p_timezone text := event->>'timezone';
    p_now timestamptz := (event->>'now')::timestamptz;
    p_seen_since timestamptz := (event->>'seen_since')::timestamptz;
    p_platform text := event->>'platform';
    p_permission boolean := (event->>'permission')::boolean;
    p_token_kind text := event->>'token_kind';
    p_session_id text := event->>'session_id';
    user_changed boolean;
BEGIN
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    SELECT d.id, d.user_id INTO recorded_device, recorded_user
    FROM devices_device d WHERE d.tenant_id = p_tenant AND d.token_hash = p_token_hash;

    IF p_anonymous AND recorded_device IS NOT NULL THEN
        -- an unnamed event on a known device: the device's own user (its token lock is held)
        UPDATE devices_appuser AS u SET language = p_language, country = p_country, timezone = p_timezone,
                                        last_seen_at = p_now
        WHERE u.id = recorded_user AND (u.language <> p_language OR u.country <> p_country
                                        OR u.timezone <> p_timezone OR u.last_seen_at < p_seen_since);
    ELSE
        -- the user the app named; for an unnamed event on a new device, its anonymous user
        SELECT u.id, (u.language <> p_language OR u.country <> p_country OR u.timezone <> p_timezone
                      OR u.last_seen_at < p_seen_since)
        INTO recorded_user, user_changed
        FROM devices_appuser u WHERE u.tenant_id = p_tenant AND u.app_user_id = p_app_user_id
        FOR KEY SHARE;
        IF recorded_user IS NULL THEN
            INSERT INTO devices_appuser AS u
                (tenant_id, app_user_id, is_anonymous, language, country, timezone, first_seen_at, last_seen_at)
            VALUES (p_tenant, p_app_user_id, p_anonymous, p_language, p_country, p_timezone, p_now, p_now)
            ON CONFLICT (tenant_id, app_user_id) DO UPDATE SET
                language = EXCLUDED.language, country = EXCLUDED.country, timezone = EXCLUDED.timezone,
                last_seen_at = EXCLUDED.last_seen_at
            RETURNING u.id INTO recorded_user;
        ELSIF user_changed THEN
            UPDATE devices_appuser AS u SET language = p_language, country = p_country, timezone = p_timezone,
                                            last_seen_at = p_now
            WHERE u.id = recorded_user;
        END IF;
    END IF;

    IF recorded_device IS NULL THEN
        INSERT INTO devices_device AS d
            (tenant_id, user_id, token, token_hash, token_kind, platform, push_permission, is_active,
             deactivated_at, deactivation_reason, last_session_id, created_at, last_seen_at, token_updated_at)
        VALUES (p_tenant, recorded_user, event->>'token', p_token_hash, p_token_kind, p_platform,
                p_permission, true, NULL, '', p_session_id, p_now, p_now, p_now)
        ON CONFLICT (tenant_id, token_hash) DO UPDATE SET
            user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
            push_permission = EXCLUDED.push_permission, token_kind = EXCLUDED.token_kind,
            last_session_id = EXCLUDED.last_session_id, last_seen_at = EXCLUDED.last_seen_at,
            is_active = true, deactivated_at = NULL, deactivation_reason = ''
        RETURNING d.id INTO recorded_device;
    ELSE
        UPDATE devices_device AS d SET
            user_id = recorded_user, platform = p_platform, push_permission = p_permission,
            token_kind = p_token_kind, last_session_id = p_session_id, last_seen_at = p_now,
            is_active = true, deactivated_at = NULL, deactivation_reason = ''
        WHERE d.id = recorded_device AND (
            d.user_id <> recorded_user OR d.platform <> p_platform OR d.push_permission <> p_permission
            OR d.token_kind <> p_token_kind OR d.last_session_id <> p_session_id OR NOT d.is_active
            OR d.deactivated_at IS NOT NULL OR d.deactivation_reason <> '' OR d.last_seen_at < p_seen_since);
    END IF;

    -- the same event again (a client retry) is stored already
    INSERT INTO devices_event
        (tenant_id, user_id, device_id, name, occurred_at, received_at, session_id, params, fingerprint)
    VALUES (p_tenant, recorded_user, recorded_device, event->>'name', (event->>'occurred_at')::timestamptz,
            p_now, p_session_id, event->'params', event->>'fingerprint')
    ON CONFLICT (tenant_id, fingerprint) DO NOTHING;
END
$fn$
"""


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(RECORD_EVENT, params=None)


def restore_functions(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from importlib import import_module

    previous = import_module("devices.migrations.0006_write_functions")
    schema_editor.execute(previous.RECORD_EVENT, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0007_tenant_indexes_covered"),
    ]

    operations = [migrations.RunPython(create_functions, restore_functions, elidable=False)]
