"""POST /events and the common token refresh as PL/pgSQL functions (PostgreSQL only).

Each was sent as one simple-protocol query of two statements (the token's advisory locks,
then one statement); PostgreSQL parsed and planned that statement on every call, a quarter
of its CPU per event. A PL/pgSQL function keeps one round trip, and its plans stay cached
for the connection. It is VOLATILE, so each statement in it takes a fresh snapshot after
the locks, exactly as the second statement of the query did (READ COMMITTED). The
arguments travel as one jsonb document, which costs the client one literal to quote
instead of seventeen.

The SQL is the statements devices/services.py sent before, with the parameters read from
the document. Changing it means a migration that replaces the function. SQLite keeps the
ORM path and gets nothing here.
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
BEGIN
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    WITH known AS (
        SELECT d.user_id FROM devices_device d WHERE d.tenant_id = p_tenant AND d.token_hash = p_token_hash
    ), named AS (
        -- the user the app named; for an unnamed event on a new device, its anonymous user
        INSERT INTO devices_appuser AS u
            (tenant_id, app_user_id, is_anonymous, language, country, timezone, first_seen_at, last_seen_at)
        SELECT p_tenant, p_app_user_id, p_anonymous, p_language, p_country, p_timezone, p_now, p_now
        WHERE NOT p_anonymous OR NOT EXISTS (SELECT 1 FROM known)
        ON CONFLICT (tenant_id, app_user_id) DO UPDATE SET
            language = EXCLUDED.language, country = EXCLUDED.country, timezone = EXCLUDED.timezone,
            last_seen_at = EXCLUDED.last_seen_at
        RETURNING u.id
    ), unnamed AS (
        -- an unnamed event on a known device: the device's own user
        UPDATE devices_appuser AS u SET language = p_language, country = p_country, timezone = p_timezone,
                                        last_seen_at = p_now
        WHERE p_anonymous AND u.id = (SELECT known.user_id FROM known)
        RETURNING u.id
    ), app_user AS (
        SELECT named.id FROM named UNION ALL SELECT unnamed.id FROM unnamed
    ), device AS (
        INSERT INTO devices_device AS d
            (tenant_id, user_id, token, token_hash, token_kind, platform, push_permission, is_active,
             deactivated_at, deactivation_reason, last_session_id, created_at, last_seen_at, token_updated_at)
        SELECT p_tenant, app_user.id, event->>'token', p_token_hash, event->>'token_kind', event->>'platform',
               (event->>'permission')::boolean, true, NULL, '', event->>'session_id', p_now, p_now, p_now
        FROM app_user
        ON CONFLICT (tenant_id, token_hash) DO UPDATE SET
            user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
            push_permission = EXCLUDED.push_permission, token_kind = EXCLUDED.token_kind,
            last_session_id = EXCLUDED.last_session_id, last_seen_at = EXCLUDED.last_seen_at,
            is_active = true, deactivated_at = NULL, deactivation_reason = ''
        RETURNING d.id, d.user_id
    ), stored AS (
        -- the same event again (a client retry) is stored already
        INSERT INTO devices_event
            (tenant_id, user_id, device_id, name, occurred_at, received_at, session_id, params, fingerprint)
        SELECT p_tenant, device.user_id, device.id, event->>'name', (event->>'occurred_at')::timestamptz,
               p_now, event->>'session_id', event->'params', event->>'fingerprint'
        FROM device
        ON CONFLICT (tenant_id, fingerprint) DO NOTHING
    )
    SELECT device.id, device.user_id INTO recorded_device, recorded_user FROM device;
END
$fn$
"""

# The common refresh: the device holding the old token takes the new one, when no row holds
# the new token yet and the named user (if any) exists. Otherwise it changes nothing and
# returns no row (devices/services.py then takes the ORM path).
REFRESH_TOKEN = """
CREATE OR REPLACE FUNCTION herald_refresh_token(lock_keys bigint[], refresh jsonb)
RETURNS SETOF devices_device LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lock_key bigint;
    p_tenant bigint := (refresh->>'tenant')::bigint;
    p_old_hash text := refresh->>'old_hash';
    p_new_hash text := refresh->>'new_hash';
    p_new_token text := refresh->>'new_token';
    p_app_user_id text := refresh->>'app_user_id';
    p_platform text := refresh->>'platform';
    p_now timestamptz := (refresh->>'now')::timestamptz;
BEGIN
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;
    RETURN QUERY WITH device AS (
        SELECT d.id, d.user_id FROM devices_device d
        WHERE d.tenant_id = p_tenant AND d.token_hash = p_old_hash AND NOT EXISTS (
            SELECT 1 FROM devices_device n WHERE n.tenant_id = p_tenant AND n.token_hash = p_new_hash)
    ), owner AS (
        SELECT device.id AS device_id, CASE WHEN p_app_user_id = '' THEN device.user_id ELSE (
            SELECT u.id FROM devices_appuser u WHERE u.tenant_id = p_tenant AND u.app_user_id = p_app_user_id
        ) END AS id
        FROM device
    ), rotation AS (
        INSERT INTO devices_tokenrotation (device_id, old_token, old_token_hash, new_token, rotated_at)
        SELECT owner.device_id, refresh->>'old_token', p_old_hash, p_new_token, p_now
        FROM owner WHERE owner.id IS NOT NULL
        RETURNING devices_tokenrotation.device_id
    ), updated AS (
        UPDATE devices_device AS d SET
            token = p_new_token, token_hash = p_new_hash, token_updated_at = p_now, user_id = owner.id,
            platform = CASE WHEN p_platform = '' THEN d.platform ELSE p_platform END,
            is_active = true, deactivated_at = NULL, deactivation_reason = '', last_seen_at = p_now
        FROM owner JOIN rotation USING (device_id)
        WHERE d.id = rotation.device_id
        RETURNING d.*
    )
    SELECT * FROM updated;
END
$fn$
"""

FUNCTIONS = {"herald_record_event(bigint[], jsonb)": RECORD_EVENT, "herald_refresh_token(bigint[], jsonb)": REFRESH_TOKEN}


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in FUNCTIONS.values():
        schema_editor.execute(sql, params=None)


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for signature in FUNCTIONS:
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0005_targetable_id_index"),
    ]

    operations = [migrations.RunPython(create_functions, drop_functions, elidable=False)]
