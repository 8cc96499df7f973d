"""herald_record_events reads its rows once and writes each once (PostgreSQL only).

Migration 0009's function applied a batch of queued events one document at a time: per
document an EXISTS on devices_event, then herald_record_event (its device read, its user read
FOR KEY SHARE, a conditional update or insert of each, the event's insert), about ten
statements each with its executor start-up and its index probes: ~0.27 ms of PostgreSQL CPU
per event (bench/README.md, "The queued writer, set-based"). The same result now comes from a
fixed number of statements per batch:

1. every token lock, in the caller's (sorted) order, as before;
2. the documents to apply: those whose (tenant, fingerprint) is not stored, the first of
   each fingerprint in the batch (a later one is the same event again), in the batch's order;
3. one read of their devices, and one of every user they may touch (the users they name,
   and their devices' users), those FOR KEY SHARE as herald_record_event reads a named user,
   so that an erasure waits for the batch, as it waited for each event;
4. then, in PL/pgSQL and in memory, herald_record_event's own rules applied to the
   documents in order, each seeing what the earlier ones did: which user an event belongs to
   (an unnamed event on a known device: the device's; else the one it names, created if
   new), whether the user's and the device's rows change (a field differs, or last_seen_at
   is older than the document's seen_since), what a new device holds;
5. one insert of the new users and one of the new devices (each in the order the documents
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
deactivated since step 3 is made active again, its last_seen_at the time of its last event).
A user the batch shares with a direct event of another token is written by both, the last to
write winning, as before.

The reverse migration restores 0009's function.
"""

from django.db import migrations

RECORD_EVENTS = """
CREATE OR REPLACE FUNCTION herald_record_events(lock_keys bigint[], docs jsonb)
RETURNS SETOF integer LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    lock_key bigint;
    i integer;
    g integer;
    h integer;
    -- the documents to apply, in order (index i)
    e_n integer[]; e_g integer[]; e_h integer[]; e_user integer[];
    e_tenant bigint[]; e_hash text[]; e_key text[]; e_anon boolean[];
    e_lang text[]; e_country text[]; e_tz text[]; e_now timestamptz[]; e_since timestamptz[];
    e_platform text[]; e_perm boolean[]; e_kind text[]; e_session text[];
    -- their devices (index g: one per token), as read and then as the documents leave them
    d_id bigint[]; d_tenant bigint[]; d_hash text[]; d_ukey text[]; d_uh integer[];
    d_platform text[]; d_perm boolean[]; d_kind text[]; d_session text[];
    d_active boolean[]; d_deactivated timestamptz[]; d_reason text[]; d_last timestamptz[];
    d_seen timestamptz[]; d_created timestamptz[]; d_new integer[]; d_first integer[]; d_dirty boolean[];
    -- the users they may touch (index h)
    u_id bigint[]; u_tenant bigint[]; u_key text[]; u_anon boolean[];
    u_lang text[]; u_country text[]; u_tz text[]; u_first timestamptz[]; u_last timestamptz[];
    u_new integer[]; u_dirty boolean[];
    new_users integer := 0;
    new_devices integer := 0;
BEGIN
    FOREACH lock_key IN ARRAY lock_keys LOOP
        PERFORM pg_advisory_xact_lock(lock_key);
    END LOOP;

    -- 2. The documents to apply, and their tokens' indexes.
    SELECT array_agg(a.n ORDER BY a.n), array_agg(a.g ORDER BY a.n), array_agg(a.tenant ORDER BY a.n),
           array_agg(a.token_hash ORDER BY a.n), array_agg(a.app_user_id ORDER BY a.n),
           array_agg(a.anonymous ORDER BY a.n), array_agg(a.language ORDER BY a.n),
           array_agg(a.country ORDER BY a.n), array_agg(a.timezone ORDER BY a.n), array_agg(a.now ORDER BY a.n),
           array_agg(a.seen_since ORDER BY a.n), array_agg(a.platform ORDER BY a.n),
           array_agg(a.permission ORDER BY a.n), array_agg(a.token_kind ORDER BY a.n),
           array_agg(a.session_id ORDER BY a.n)
    INTO e_n, e_g, e_tenant, e_hash, e_key, e_anon, e_lang, e_country, e_tz, e_now, e_since, e_platform,
         e_perm, e_kind, e_session
    FROM (
        SELECT x.*, dense_rank() OVER (ORDER BY x.tenant, x.token_hash)::integer AS g
        FROM (
            SELECT (o.ordinality - 1)::integer AS n, o.*,
                   row_number() OVER (PARTITION BY o.tenant, o.fingerprint ORDER BY o.ordinality) AS nth
            FROM ROWS FROM (jsonb_to_recordset(docs) AS (
                tenant bigint, token_hash text, app_user_id text, anonymous boolean, language text,
                country text, timezone text, now timestamptz, seen_since timestamptz, platform text,
                permission boolean, token_kind text, session_id text, fingerprint text
            )) WITH ORDINALITY AS o
        ) x
        WHERE x.nth = 1 AND NOT EXISTS (
            SELECT 1 FROM devices_event e WHERE e.tenant_id = x.tenant AND e.fingerprint = x.fingerprint
        )
    ) a;
    IF e_n IS NULL THEN
        RETURN;
    END IF;

    -- 3. Their devices as they are, with their users' app_user_id ...
    SELECT array_agg(d.id ORDER BY k.g), array_agg(k.tenant ORDER BY k.g), array_agg(k.token_hash ORDER BY k.g),
           array_agg(du.app_user_id ORDER BY k.g), array_agg(d.platform ORDER BY k.g),
           array_agg(d.push_permission ORDER BY k.g), array_agg(d.token_kind ORDER BY k.g),
           array_agg(d.last_session_id ORDER BY k.g), array_agg(d.is_active ORDER BY k.g),
           array_agg(d.deactivated_at ORDER BY k.g), array_agg(d.deactivation_reason ORDER BY k.g),
           array_agg(d.last_seen_at ORDER BY k.g)
    INTO d_id, d_tenant, d_hash, d_ukey, d_platform, d_perm, d_kind, d_session, d_active, d_deactivated,
         d_reason, d_last
    FROM (SELECT DISTINCT k.tenant, k.token_hash, k.g FROM unnest(e_tenant, e_hash, e_g) AS k(tenant, token_hash, g)) k
    LEFT JOIN devices_device d ON d.tenant_id = k.tenant AND d.token_hash = k.token_hash
    LEFT JOIN devices_appuser du ON du.id = d.user_id;

    -- ... and every user the documents may touch: the ones they name, their devices' users.
    WITH k AS MATERIALIZED (
        SELECT DISTINCT s.tenant, s.key
        FROM (SELECT * FROM unnest(e_tenant, e_key) UNION ALL SELECT * FROM unnest(d_tenant, d_ukey)) AS s(tenant, key)
        WHERE s.key IS NOT NULL
    ), r AS MATERIALIZED (
        SELECT k.tenant, k.key, row_number() OVER (ORDER BY k.tenant, k.key)::integer AS h FROM k
    ), l AS MATERIALIZED (
        SELECT u.id, u.tenant_id, u.app_user_id, u.is_anonymous, u.language, u.country, u.timezone, u.last_seen_at
        FROM devices_appuser u JOIN k ON u.tenant_id = k.tenant AND u.app_user_id = k.key
        ORDER BY u.id FOR KEY SHARE OF u
    )
    SELECT us.*, eh.hs, dh.hs
    INTO u_id, u_tenant, u_key, u_anon, u_lang, u_country, u_tz, u_last, e_h, d_uh
    FROM (
        SELECT array_agg(l.id ORDER BY r.h), array_agg(r.tenant ORDER BY r.h), array_agg(r.key ORDER BY r.h),
               array_agg(l.is_anonymous ORDER BY r.h), array_agg(l.language ORDER BY r.h),
               array_agg(l.country ORDER BY r.h), array_agg(l.timezone ORDER BY r.h),
               array_agg(l.last_seen_at ORDER BY r.h)
        FROM r LEFT JOIN l ON l.tenant_id = r.tenant AND l.app_user_id = r.key
    ) us, (
        SELECT array_agg(r.h ORDER BY o.i) AS hs
        FROM unnest(e_tenant, e_key) WITH ORDINALITY AS o(tenant, key, i)
        JOIN r ON r.tenant = o.tenant AND r.key = o.key
    ) eh, (
        SELECT array_agg(r.h ORDER BY o.i) AS hs
        FROM unnest(d_tenant, d_ukey) WITH ORDINALITY AS o(tenant, key, i)
        LEFT JOIN r ON r.tenant = o.tenant AND r.key = o.key
    ) dh;

    u_new := array_fill(NULL::integer, ARRAY[array_length(u_id, 1)]);
    u_dirty := array_fill(false, ARRAY[array_length(u_id, 1)]);
    u_first := array_fill(NULL::timestamptz, ARRAY[array_length(u_id, 1)]);
    d_new := array_fill(NULL::integer, ARRAY[array_length(d_id, 1)]);
    d_first := array_fill(NULL::integer, ARRAY[array_length(d_id, 1)]);
    d_dirty := array_fill(false, ARRAY[array_length(d_id, 1)]);
    d_created := array_fill(NULL::timestamptz, ARRAY[array_length(d_id, 1)]);
    d_seen := array_fill(NULL::timestamptz, ARRAY[array_length(d_id, 1)]);
    e_user := array_fill(NULL::integer, ARRAY[array_length(e_n, 1)]);

    -- 4. herald_record_event's rules, document by document, on the rows in memory.
    FOR i IN 1 .. array_length(e_n, 1) LOOP
        g := e_g[i];
        IF e_anon[i] AND (d_id[g] IS NOT NULL OR d_new[g] IS NOT NULL) THEN
            -- an unnamed event on a known device: the device's own user
            h := d_uh[g];
            IF u_lang[h] <> e_lang[i] OR u_country[h] <> e_country[i] OR u_tz[h] <> e_tz[i]
               OR u_last[h] < e_since[i] THEN
                u_lang[h] := e_lang[i]; u_country[h] := e_country[i]; u_tz[h] := e_tz[i]; u_last[h] := e_now[i];
                u_dirty[h] := u_new[h] IS NULL;
            END IF;
        ELSE
            -- the user the app named; for an unnamed event on a new device, its anonymous user
            h := e_h[i];
            IF u_id[h] IS NULL AND u_new[h] IS NULL THEN
                new_users := new_users + 1;
                u_new[h] := new_users;
                u_anon[h] := e_anon[i];
                u_lang[h] := e_lang[i]; u_country[h] := e_country[i]; u_tz[h] := e_tz[i];
                u_first[h] := e_now[i]; u_last[h] := e_now[i];
            ELSIF u_lang[h] <> e_lang[i] OR u_country[h] <> e_country[i] OR u_tz[h] <> e_tz[i]
                  OR u_last[h] < e_since[i] THEN
                u_lang[h] := e_lang[i]; u_country[h] := e_country[i]; u_tz[h] := e_tz[i]; u_last[h] := e_now[i];
                u_dirty[h] := u_new[h] IS NULL;
            END IF;
        END IF;

        IF d_id[g] IS NULL AND d_new[g] IS NULL THEN
            new_devices := new_devices + 1;
            d_new[g] := new_devices;
            d_first[g] := e_n[i];
            d_uh[g] := h;
            d_platform[g] := e_platform[i]; d_perm[g] := e_perm[i]; d_kind[g] := e_kind[i];
            d_session[g] := e_session[i];
            d_active[g] := true; d_deactivated[g] := NULL; d_reason[g] := '';
            d_created[g] := e_now[i]; d_last[g] := e_now[i];
        ELSIF d_uh[g] <> h OR d_platform[g] <> e_platform[i] OR d_perm[g] <> e_perm[i]
              OR d_kind[g] <> e_kind[i] OR d_session[g] <> e_session[i] OR NOT d_active[g]
              OR d_deactivated[g] IS NOT NULL OR d_reason[g] <> '' OR d_last[g] < e_since[i] THEN
            d_uh[g] := h;
            d_platform[g] := e_platform[i]; d_perm[g] := e_perm[i]; d_kind[g] := e_kind[i];
            d_session[g] := e_session[i];
            d_active[g] := true; d_deactivated[g] := NULL; d_reason[g] := '';
            d_last[g] := e_now[i];
            d_dirty[g] := d_new[g] IS NULL;
        END IF;
        d_seen[g] := e_now[i];
        e_user[i] := h;
    END LOOP;

    -- 5. The writes: new users, changed users, new devices, changed devices, the events.
    IF new_users > 0 THEN
        WITH ins AS (
            INSERT INTO devices_appuser AS u
                (tenant_id, app_user_id, is_anonymous, language, country, timezone, first_seen_at, last_seen_at)
            SELECT x.tenant, x.key, x.anon, x.lang, x.country, x.tz, x.first, x.last
            FROM unnest(u_tenant, u_key, u_anon, u_lang, u_country, u_tz, u_first, u_last, u_new)
                AS x(tenant, key, anon, lang, country, tz, first, last, ord)
            WHERE x.ord IS NOT NULL
            ORDER BY x.ord
            ON CONFLICT (tenant_id, app_user_id) DO UPDATE SET
                language = EXCLUDED.language, country = EXCLUDED.country, timezone = EXCLUDED.timezone,
                last_seen_at = EXCLUDED.last_seen_at
            RETURNING u.tenant_id, u.app_user_id, u.id
        )
        SELECT array_agg(coalesce(x.id, ins.id) ORDER BY x.h) INTO u_id
        FROM unnest(u_id, u_tenant, u_key) WITH ORDINALITY AS x(id, tenant, key, h)
        LEFT JOIN ins ON x.id IS NULL AND ins.tenant_id = x.tenant AND ins.app_user_id = x.key;
    END IF;

    UPDATE devices_appuser AS u SET
        language = x.lang, country = x.country, timezone = x.tz, last_seen_at = x.last
    FROM unnest(u_id, u_lang, u_country, u_tz, u_last, u_dirty) AS x(id, lang, country, tz, last, dirty)
    WHERE x.dirty AND u.id = x.id;

    IF new_devices > 0 THEN
        WITH ins AS (
            INSERT INTO devices_device AS d
                (tenant_id, user_id, token, token_hash, token_kind, platform, push_permission, is_active,
                 deactivated_at, deactivation_reason, last_session_id, created_at, last_seen_at, token_updated_at)
            SELECT x.tenant, u_id[x.uh], docs -> x.first ->> 'token', x.token_hash, x.kind, x.platform, x.perm,
                   true, NULL, '', x.session, x.created, x.last, x.created
            FROM unnest(d_tenant, d_hash, d_uh, d_kind, d_platform, d_perm, d_session, d_created, d_last, d_new,
                        d_first)
                AS x(tenant, token_hash, uh, kind, platform, perm, session, created, last, ord, first)
            WHERE x.ord IS NOT NULL
            ORDER BY x.ord
            ON CONFLICT (tenant_id, token_hash) DO UPDATE SET
                user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                push_permission = EXCLUDED.push_permission, token_kind = EXCLUDED.token_kind,
                last_session_id = EXCLUDED.last_session_id, last_seen_at = EXCLUDED.last_seen_at,
                is_active = true, deactivated_at = NULL, deactivation_reason = ''
            RETURNING d.tenant_id, d.token_hash, d.id
        )
        SELECT array_agg(coalesce(x.id, ins.id) ORDER BY x.g) INTO d_id
        FROM unnest(d_id, d_tenant, d_hash) WITH ORDINALITY AS x(id, tenant, token_hash, g)
        LEFT JOIN ins ON x.id IS NULL AND ins.tenant_id = x.tenant AND ins.token_hash = x.token_hash;
    END IF;

    -- A device the documents change gets their final state; one they leave alone is written
    -- only if it was deactivated since it was read (as herald_record_event's re-check did).
    UPDATE devices_device AS d SET
        user_id = u_id[x.uh], platform = x.platform, push_permission = x.perm, token_kind = x.kind,
        last_session_id = x.session, last_seen_at = CASE WHEN x.dirty THEN x.last ELSE x.seen END,
        is_active = true, deactivated_at = NULL, deactivation_reason = ''
    FROM unnest(d_id, d_uh, d_platform, d_perm, d_kind, d_session, d_last, d_seen, d_dirty, d_new)
        AS x(id, uh, platform, perm, kind, session, last, seen, dirty, ord)
    WHERE x.ord IS NULL AND d.id = x.id
      AND (x.dirty OR NOT d.is_active OR d.deactivated_at IS NOT NULL OR d.deactivation_reason <> '');

    -- the same event again (a client retry) is stored already
    INSERT INTO devices_event
        (tenant_id, user_id, device_id, name, occurred_at, received_at, session_id, params, fingerprint)
    SELECT x.tenant, u_id[x.uh], d_id[x.g], j.doc ->> 'name', (j.doc ->> 'occurred_at')::timestamptz, x.now,
           x.session, j.doc -> 'params', j.doc ->> 'fingerprint'
    FROM unnest(e_n, e_tenant, e_user, e_g, e_now, e_session) AS x(n, tenant, uh, g, now, session)
    CROSS JOIN LATERAL (SELECT docs -> x.n AS doc) j
    ORDER BY x.n
    ON CONFLICT (tenant_id, fingerprint) DO NOTHING;

    RETURN QUERY SELECT unnest(e_n);
END
$fn$
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(RECORD_EVENTS, params=None)


def restore_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from importlib import import_module

    previous = import_module("devices.migrations.0009_record_events_function")
    schema_editor.execute(previous.RECORD_EVENTS, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0009_record_events_function"),
    ]

    operations = [migrations.RunPython(create_function, restore_function, elidable=False)]
