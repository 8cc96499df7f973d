"""Fewer index entries for each delivery on the send path, and room for its claim to be HOT.

A delivery is written three times (the fan-out's INSERT, the claim, the result), and each
row version that is not a HOT update goes into every index of the table:

- the message's own foreign-key index goes: the unique (message, device) constraint and
  delivery_work_idx lead with message_id and serve every lookup and cascade by message;
- a new delivery's tracking token is derived from its id (Delivery.tracking_token) and not
  stored, so it goes into no index: a random token went into a random page of a unique
  index twice per delivery (its INSERT, its result). The column keeps the tokens of the
  deliveries written before, unique where set; its LIKE index (unique=True on PostgreSQL)
  goes, nothing used it;
- sent_at is indexed only where it is set: the dashboard counts the days of sent deliveries
  (`sent_at >= start` implies it is not null), and a row is written twice before it is sent;
- on PostgreSQL the table keeps 55 % of each new page free (fillfactor 45). The claim
  changes only unindexed columns (claim, claimed_until), so it can be a HOT update, but
  only if its row version fits in the row's page: at the default fillfactor (100) 0.6 % of
  claims were HOT; at 70, 38 %; at 50, 83–86 % (94 % with 16-character claim tokens); at 45,
  all of them (bench/README.md).

On PostgreSQL the indexes are built and dropped CONCURRENTLY, so a large table keeps taking
writes (hence atomic = False). Backwards, the deliveries without a token get their derived
one stored, which their pushes carried, before the token is unique everywhere again. The
fillfactor applies to pages written from now on. Elsewhere, Django's own operations.
"""

import django.db.models.deletion
from django.db import migrations, models


TABLE = "messaging_delivery"


class PostgreSQLWithoutBlocking(migrations.SeparateDatabaseAndState):
    """`operations`, except that on PostgreSQL the database is changed by `postgresql`
    (a function of the schema editor) to the same end; backwards, Django's operations."""

    def __init__(self, operations, postgresql):
        super().__init__(state_operations=operations, database_operations=operations)
        self.postgresql = postgresql

    def deconstruct(self):
        return self.__class__.__qualname__, [], {"operations": self.state_operations, "postgresql": self.postgresql}

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            self.postgresql(schema_editor)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)


def _names(schema_editor, sql: str, column: str) -> list[str]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, [TABLE, column])
        return [name for (name,) in cursor.fetchall()]


# Plain (not unique, not partial) indexes on exactly this one column, whatever Django named them.
PLAIN_INDEXES = """
    SELECT i.relname FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
    WHERE x.indrelid = %s::regclass AND a.attname = %s AND x.indnatts = 1
      AND NOT x.indisunique AND x.indpred IS NULL
"""
UNIQUE_CONSTRAINTS = """
    SELECT c.conname FROM pg_constraint c
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    WHERE c.conrelid = %s::regclass AND a.attname = %s AND c.contype = 'u'
      AND cardinality(c.conkey) = 1
"""


def without_blocking(schema_editor):
    qn = schema_editor.quote_name
    execute = schema_editor.execute
    execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS delivery_sent_idx ON {TABLE} (sent_at) "
        "WHERE sent_at IS NOT NULL"
    )
    execute("DROP INDEX CONCURRENTLY IF EXISTS delivery_sent_at_idx")
    # The message_id index, and tracking_token's LIKE index (its unique one is a constraint's).
    for column in ("message_id", "tracking_token"):
        for name in _names(schema_editor, PLAIN_INDEXES, column):
            execute(f"DROP INDEX CONCURRENTLY {qn(name)}")
    execute(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS delivery_unique_stored_tracking_token "
        f"ON {TABLE} (tracking_token) WHERE tracking_token <> ''"
    )
    for name in _names(schema_editor, UNIQUE_CONSTRAINTS, "tracking_token"):
        execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {qn(name)}")


def store_derived_tokens(apps, schema_editor):
    """Backwards: each delivery without a stored token gets the one its push carried."""
    from messaging.models import derived_tracking_token

    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(f"SELECT id FROM {TABLE} WHERE tracking_token = '' LIMIT 10000")  # noqa: S608
            ids = [pk for (pk,) in cursor.fetchall()]
            if not ids:
                return
            cursor.executemany(
                f"UPDATE {TABLE} SET tracking_token = %s WHERE id = %s",  # noqa: S608
                [(derived_tracking_token(pk), pk) for pk in ids],
            )


def leave_room_for_hot_claims(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 45)")


def fill_pages(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("devices", "0007_tenant_indexes_covered"),
        ("messaging", "0010_audience_snapshot"),
    ]

    operations = [
        PostgreSQLWithoutBlocking(
            operations=[
                migrations.RemoveIndex(
                    model_name="delivery",
                    name="delivery_sent_at_idx",
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="message",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="messaging.message",
                    ),
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="tracking_token",
                    field=models.CharField(blank=True, max_length=32),
                ),
                migrations.RenameField(
                    model_name="delivery",
                    old_name="tracking_token",
                    new_name="stored_tracking_token",
                ),
                migrations.AlterField(
                    model_name="delivery",
                    name="stored_tracking_token",
                    field=models.CharField(blank=True, db_column="tracking_token", max_length=32),
                ),
                migrations.AddIndex(
                    model_name="delivery",
                    index=models.Index(
                        condition=models.Q(("sent_at__isnull", False)), fields=["sent_at"], name="delivery_sent_idx"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="delivery",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("stored_tracking_token", ""), _negated=True),
                        fields=("stored_tracking_token",),
                        name="delivery_unique_stored_tracking_token",
                    ),
                ),
            ],
            postgresql=without_blocking,
        ),
        migrations.RunPython(migrations.RunPython.noop, store_derived_tokens, elidable=False),
        migrations.RunPython(leave_room_for_hot_claims, fill_pages, elidable=False),
    ]
