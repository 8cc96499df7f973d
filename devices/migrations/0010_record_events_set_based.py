"""herald_record_events reads its rows once and writes each once (PostgreSQL only).

Migration 0009's function applied a batch of queued events one document at a time: per
document an EXISTS on devices_event, then herald_record_event (its device read, its user read
FOR KEY SHARE, a conditional update or insert of each, the event's insert), about ten
statements each with its executor start-up and its index probes: ~0.27 ms of PostgreSQL CPU
per event (bench/README.md, "The queued writer, set-based"). The same result now comes from a
fixed number of statements per batch:

1. every token lock, in the caller's (sorted) order, as before;
2. one statement reads what the batch needs: the documents to apply (those whose (tenant,
   fingerprint) is not stored, the first of each fingerprint in the batch: a later one is the
   same event again), their devices, and every user they may touch (the users they name, their
   devices' users), those FOR KEY SHARE as herald_record_event reads a named user, so that an
   erasure waits for the batch as it waited for each event. Each comes back as one array of a
   composite type (herald_ingest_document, _device, _user; one sort each: an array per column
   cost a sort per column, a third of the function's time);
3. then, in PL/pgSQL and in memory, herald_record_event's own rules applied to the
   documents in order, each seeing what the earlier ones did: which user an event belongs to
   (an unnamed event on a known device: the device's; else the one it names, created if
   new), whether the user's and the device's rows change (a field differs, or last_seen_at
   is older than the document's seen_since), what a new device holds;
4. one insert of the new users and one of the new devices (each in the order the documents
   created them, so their ids are in that order), one update of the changed users and one of
   the changed devices (their final state: a row the batch changes twice is written once),
   one insert of all the events in the documents' order (their ids in stream order, as
   before).

Same rows as applying the documents one by one (tests/devices/test_record_events_batches.py
checks it on random batches against herald_record_event), same positions returned. What
concurrent writers can still do differs only in timing: the token locks keep every other
writer off the batch's devices except a deactivation (FCM said the token is dead), which
takes no token lock; herald_record_event's update re-checked the device and undid a
deactivation committed after its read, and so does the final update here (a device
deactivated since step 2 is made active again, its last_seen_at the time of its last event).
A user the batch shares with a direct event of another token is written by both, the last to
write winning, as before.

The reverse migration restores 0009's function and drops the three types.
"""

from django.db import migrations

TYPES = """
CREATE TYPE herald_ingest_document AS (
    n integer, g integer, h integer, anonymous boolean, language text, country text, timezone text,
    now timestamptz, seen_since timestamptz, platform text, permission boolean, token_kind text, session_id text
);
CREATE TYPE herald_ingest_device AS (
    id bigint, tenant bigint, token_hash text, uh integer, platform text, permission boolean, token_kind text,
    session_id text, is_active boolean, deactivated_at timestamptz, reason text, created_at timestamptz,
    last_seen_at timestamptz, last_n integer, new integer, first_n integer, dirty boolean
);
CREATE TYPE herald_ingest_user AS (
    id bigint, tenant bigint, app_user_id text, is_anonymous boolean,
    -- typed as devices_appuser's columns: a document's value too long for one fails at the
    -- assignment (DataError), as its write failed in herald_record_event, even if a later
    -- document of the batch would overwrite it before the row is written
    language varchar(2), country varchar(2), timezone varchar(64),
    first_seen_at timestamptz, last_seen_at timestamptz, new integer, dirty boolean
);
"""

RECORD_EVENTS = """
CREATE OR REPLACE FUNCTION herald_record_events(lock_keys bigint[], docs jsonb)
RETURNS SETOF integer LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lock_key bigint;
    i integer := 0;
    h integer;
    d herald_ingest_document;
    dv herald_ingest_device;
    u herald_ingest_user;
    created record;
    e herald_ingest_document[];      -- the documents to apply, in order
    devs herald_ingest_device[];     -- their devices (index g), as read, then as the documents leave them
    users herald_ingest_user[];      -- every user they may touch (index h), likewise
    e_user integer[];                -- each document's user (index h)
    new_users integer := 0;
    new_devices integer := 0;
BEGIN
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;

    WITH x AS MATERIALIZED (
        SELECT (t.ord - 1)::integer AS n, t.v, (t.v ->> 'tenant')::bigint AS tenant, t.v ->> 'token_hash' AS token_hash,
               t.v ->> 'app_user_id' AS app_user_id, t.v ->> 'fingerprint' AS fingerprint
        FROM jsonb_array_elements(docs) WITH ORDINALITY AS t(v, ord)
    ), a AS MATERIALIZED (
        -- to apply: the first document of each fingerprint, unless its event is stored
        SELECT x.* FROM x
        WHERE x.n IN (SELECT min(y.n) FROM x AS y GROUP BY y.tenant, y.fingerprint)
          AND NOT EXISTS (
              SELECT 1 FROM devices_event ev WHERE ev.tenant_id = x.tenant AND ev.fingerprint = x.fingerprint
          )
    ), dk AS MATERIALIZED (
        SELECT s.tenant, s.token_hash, s.last_n, row_number() OVER ()::integer AS g
        FROM (SELECT a.tenant, a.token_hash, max(a.n) AS last_n FROM a GROUP BY a.tenant, a.token_hash) AS s
    ), dr AS MATERIALIZED (
        SELECT dk.g, dk.tenant, dk.token_hash, dk.last_n, dd.id, dd.platform, dd.push_permission, dd.token_kind,
               dd.last_session_id, dd.is_active, dd.deactivated_at, dd.deactivation_reason, dd.last_seen_at,
               du.app_user_id AS user_key
        FROM dk
        -- each row by its index, whatever the statistics say (LIMIT 1: a lookup per row, not a join)
        LEFT JOIN LATERAL (
            SELECT * FROM devices_device dd0
            WHERE dd0.tenant_id = dk.tenant AND dd0.token_hash = dk.token_hash LIMIT 1
        ) AS dd ON true
        LEFT JOIN LATERAL (
            SELECT du0.app_user_id FROM devices_appuser du0 WHERE du0.id = dd.user_id LIMIT 1
        ) AS du ON true
    ), uk AS MATERIALIZED (
        SELECT s.tenant, s.app_user_id, row_number() OVER ()::integer AS h
        FROM (SELECT a.tenant, a.app_user_id FROM a
              UNION SELECT dr.tenant, dr.user_key FROM dr WHERE dr.user_key IS NOT NULL) AS s
    ), ul AS MATERIALIZED (
        -- read FOR KEY SHARE, as herald_record_event reads a named user: an erasure waits for the batch
        SELECT uu.*
        FROM uk CROSS JOIN LATERAL (
            SELECT uu0.id, uu0.tenant_id, uu0.app_user_id, uu0.is_anonymous, uu0.language, uu0.country,
                   uu0.timezone, uu0.first_seen_at, uu0.last_seen_at
            FROM devices_appuser uu0 WHERE uu0.tenant_id = uk.tenant AND uu0.app_user_id = uk.app_user_id
            LIMIT 1
            FOR KEY SHARE
        ) AS uu
    )
    SELECT
        (SELECT array_agg(ROW(
                    a.n, dk.g, uk.h, (a.v ->> 'anonymous')::boolean, a.v ->> 'language', a.v ->> 'country',
                    a.v ->> 'timezone', (a.v ->> 'now')::timestamptz, (a.v ->> 'seen_since')::timestamptz,
                    a.v ->> 'platform', (a.v ->> 'permission')::boolean, a.v ->> 'token_kind', a.v ->> 'session_id'
                )::herald_ingest_document ORDER BY a.n)
         FROM a
         JOIN dk ON dk.tenant = a.tenant AND dk.token_hash = a.token_hash
         JOIN uk ON uk.tenant = a.tenant AND uk.app_user_id = a.app_user_id),
        (SELECT array_agg(ROW(
                    dr.id, dr.tenant, dr.token_hash, uk.h, dr.platform, dr.push_permission, dr.token_kind,
                    dr.last_session_id, dr.is_active, dr.deactivated_at, dr.deactivation_reason, NULL,
                    dr.last_seen_at, dr.last_n, NULL, NULL, false
                )::herald_ingest_device ORDER BY dr.g)
         FROM dr LEFT JOIN uk ON uk.tenant = dr.tenant AND uk.app_user_id = dr.user_key),
        (SELECT array_agg(ROW(
                    ul.id, uk.tenant, uk.app_user_id, ul.is_anonymous, ul.language, ul.country, ul.timezone,
                    ul.first_seen_at, ul.last_seen_at, NULL, false
                )::herald_ingest_user ORDER BY uk.h)
         FROM uk LEFT JOIN ul ON ul.tenant_id = uk.tenant AND ul.app_user_id = uk.app_user_id)
    INTO e, devs, users;
    IF e IS NULL THEN
        RETURN;
    END IF;

    -- herald_record_event's rules, document by document, on the rows in memory
    e_user := array_fill(NULL::integer, ARRAY[array_length(e, 1)]);
    FOREACH d IN ARRAY e LOOP
        i := i + 1;
        dv := devs[d.g];
        IF d.anonymous AND (dv.id IS NOT NULL OR dv.new IS NOT NULL) THEN
            -- an unnamed event on a known device: the device's own user
            h := dv.uh;
            u := users[h];
            IF u.language <> d.language OR u.country <> d.country OR u.timezone <> d.timezone
               OR u.last_seen_at < d.seen_since THEN
                u.language := d.language; u.country := d.country; u.timezone := d.timezone;
                u.last_seen_at := d.now;
                u.dirty := u.new IS NULL;
                users[h] := u;
            END IF;
        ELSE
            -- the user the app named; for an unnamed event on a new device, its anonymous user
            h := d.h;
            u := users[h];
            IF u.id IS NULL AND u.new IS NULL THEN
                new_users := new_users + 1;
                u.new := new_users;
                u.is_anonymous := d.anonymous;
                u.language := d.language; u.country := d.country; u.timezone := d.timezone;
                u.first_seen_at := d.now; u.last_seen_at := d.now;
                users[h] := u;
            ELSIF u.language <> d.language OR u.country <> d.country OR u.timezone <> d.timezone
                  OR u.last_seen_at < d.seen_since THEN
                u.language := d.language; u.country := d.country; u.timezone := d.timezone;
                u.last_seen_at := d.now;
                u.dirty := u.new IS NULL;
                users[h] := u;
            END IF;
        END IF;

        IF dv.id IS NULL AND dv.new IS NULL THEN
            new_devices := new_devices + 1;
            dv.new := new_devices; dv.first_n := d.n; dv.uh := h;
            dv.platform := d.platform; dv.permission := d.permission; dv.token_kind := d.token_kind;
            dv.session_id := d.session_id;
            dv.is_active := true; dv.deactivated_at := NULL; dv.reason := '';
            dv.created_at := d.now; dv.last_seen_at := d.now;
            devs[d.g] := dv;
        ELSIF dv.uh <> h OR dv.platform <> d.platform OR dv.permission <> d.permission
              OR dv.token_kind <> d.token_kind OR dv.session_id <> d.session_id OR NOT dv.is_active
              OR dv.deactivated_at IS NOT NULL OR dv.reason <> '' OR dv.last_seen_at < d.seen_since THEN
            dv.uh := h;
            dv.platform := d.platform; dv.permission := d.permission; dv.token_kind := d.token_kind;
            dv.session_id := d.session_id;
            dv.is_active := true; dv.deactivated_at := NULL; dv.reason := '';
            dv.last_seen_at := d.now;
            dv.dirty := dv.new IS NULL;
            devs[d.g] := dv;
        END IF;
        e_user[i] := h;
    END LOOP;

    -- the writes: new users, changed users, new devices, changed devices, the events
    IF new_users > 0 THEN
        FOR created IN
            WITH ins AS (
                INSERT INTO devices_appuser AS nu
                    (tenant_id, app_user_id, is_anonymous, language, country, timezone, first_seen_at, last_seen_at)
                SELECT x.tenant, x.app_user_id, x.is_anonymous, x.language, x.country, x.timezone, x.first_seen_at,
                       x.last_seen_at
                FROM unnest(users) AS x
                WHERE x.new IS NOT NULL
                ORDER BY x.new
                ON CONFLICT (tenant_id, app_user_id) DO UPDATE SET
                    language = EXCLUDED.language, country = EXCLUDED.country, timezone = EXCLUDED.timezone,
                    last_seen_at = EXCLUDED.last_seen_at
                RETURNING nu.tenant_id, nu.app_user_id, nu.id
            )
            SELECT x.k, ins.id
            FROM unnest(users) WITH ORDINALITY AS x(id, tenant, app_user_id, is_anonymous, language, country, timezone,
                                                  first_seen_at, last_seen_at, new, dirty, k)
            JOIN ins ON ins.tenant_id = x.tenant AND ins.app_user_id = x.app_user_id
            WHERE x.new IS NOT NULL
        LOOP
            u := users[created.k];
            u.id := created.id;
            users[created.k] := u;
        END LOOP;
    END IF;

    UPDATE devices_appuser AS cu SET
        language = x.language, country = x.country, timezone = x.timezone, last_seen_at = x.last_seen_at
    FROM unnest(users) AS x
    WHERE x.dirty AND cu.id = x.id;

    IF new_devices > 0 THEN
        FOR created IN
            WITH ins AS (
                INSERT INTO devices_device AS nd
                    (tenant_id, user_id, token, token_hash, token_kind, platform, push_permission, is_active,
                     deactivated_at, deactivation_reason, last_session_id, created_at, last_seen_at, token_updated_at)
                SELECT x.tenant, (users[x.uh]).id, docs -> x.first_n ->> 'token', x.token_hash, x.token_kind,
                       x.platform, x.permission, true, NULL, '', x.session_id, x.created_at, x.last_seen_at,
                       x.created_at
                FROM unnest(devs) AS x
                WHERE x.new IS NOT NULL
                ORDER BY x.new
                ON CONFLICT (tenant_id, token_hash) DO UPDATE SET
                    user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                    push_permission = EXCLUDED.push_permission, token_kind = EXCLUDED.token_kind,
                    last_session_id = EXCLUDED.last_session_id, last_seen_at = EXCLUDED.last_seen_at,
                    is_active = true, deactivated_at = NULL, deactivation_reason = ''
                RETURNING nd.tenant_id, nd.token_hash, nd.id
            )
            SELECT x.k, ins.id
            FROM unnest(devs) WITH ORDINALITY AS x(id, tenant, token_hash, uh, platform, permission, token_kind,
                                                 session_id, is_active, deactivated_at, reason, created_at,
                                                 last_seen_at, last_n, new, first_n, dirty, k)
            JOIN ins ON ins.tenant_id = x.tenant AND ins.token_hash = x.token_hash
            WHERE x.new IS NOT NULL
        LOOP
            dv := devs[created.k];
            dv.id := created.id;
            devs[created.k] := dv;
        END LOOP;
    END IF;

    -- A device the documents change gets their final state; one they leave alone is written
    -- only if it was deactivated since it was read (as herald_record_event's re-check did).
    UPDATE devices_device AS cd SET
        user_id = (users[x.uh]).id, platform = x.platform, push_permission = x.permission,
        token_kind = x.token_kind, last_session_id = x.session_id,
        last_seen_at = CASE WHEN x.dirty THEN x.last_seen_at ELSE (docs -> x.last_n ->> 'now')::timestamptz END,
        is_active = true, deactivated_at = NULL, deactivation_reason = ''
    FROM unnest(devs) AS x
    WHERE x.new IS NULL AND cd.id = x.id
      AND (x.dirty OR NOT cd.is_active OR cd.deactivated_at IS NOT NULL OR cd.deactivation_reason <> '');

    -- the same event again (a client retry) is stored already
    INSERT INTO devices_event
        (tenant_id, user_id, device_id, name, occurred_at, received_at, session_id, params, fingerprint)
    SELECT (devs[x.g]).tenant, (users[e_user[x.k]]).id, (devs[x.g]).id, j.doc ->> 'name',
           (j.doc ->> 'occurred_at')::timestamptz, x.now, x.session_id, j.doc -> 'params', j.doc ->> 'fingerprint'
    FROM unnest(e) WITH ORDINALITY AS x(n, g, h, anonymous, language, country, timezone, now, seen_since, platform,
                                        permission, token_kind, session_id, k)
    CROSS JOIN LATERAL (SELECT docs -> x.n AS doc) AS j
    ORDER BY x.n
    ON CONFLICT (tenant_id, fingerprint) DO NOTHING;

    RETURN QUERY SELECT x.n FROM unnest(e) AS x;
END
$fn$
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(TYPES, params=None)
    schema_editor.execute(RECORD_EVENTS, params=None)


def restore_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from importlib import import_module

    previous = import_module("devices.migrations.0009_record_events_function")
    schema_editor.execute(previous.RECORD_EVENTS, params=None)
    schema_editor.execute(
        "DROP TYPE IF EXISTS herald_ingest_document, herald_ingest_device, herald_ingest_user", params=None
    )


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0009_record_events_function"),
    ]

    operations = [migrations.RunPython(create_function, restore_function, elidable=False)]
