"""Strict serializer fields for the API, and the range of dates Herald accepts.

DRF's own fields coerce: 123 becomes "123", "yes" becomes True. A client that
sends the wrong type has a bug it should hear about. Dates are bounded on the way in
(`RFC3339DateTimeField`) and read defensively on the way out (`ReadableDateTimeField`, the
model field of every date a client supplies).
"""

import re
from datetime import UTC, datetime, timedelta

from django.db import models
from rest_framework import fields

# The instants Herald accepts anywhere (an event's time, a push's schedule): wide enough for
# a phone whose clock reset to 1970, narrow enough that every value converts to any time
# zone and fits every database. Narrower rules (schedule_at) apply on top.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# Real UTC offsets run from -12:00 to +14:00; PostgreSQL refuses more than 15:59.
MAX_OFFSET = timedelta(hours=14)


class StrictCharField(fields.CharField):
    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        if self.max_length is not None and len(data) > self.max_length:
            # As documented (maxLength): the string sent, before surrounding spaces are trimmed.
            raise fields.ValidationError(
                f"Ensure this field has no more than {self.max_length} characters.", code="max_length"
            )
        return super().to_internal_value(data)


class StrictBooleanField(fields.BooleanField):
    default_error_messages = {"not_a_boolean": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


class StrictIntegerField(fields.IntegerField):
    """An integer, never "5", 5.0 or true (DRF's IntegerField takes all three)."""

    default_error_messages = {"not_an_integer": "Must be an integer."}

    def to_internal_value(self, data):
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class StrictRegexField(fields.RegexField):
    """A string matching a pattern; DRF's RegexField turns 0 into "0" first."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


class RFC3339DateTimeField(fields.DateTimeField):
    """An RFC 3339 timestamp that must carry its offset: 2026-11-23T10:00:00+03:00."""

    default_error_messages = {
        "not_rfc3339": "Must be an RFC 3339 timestamp with an offset, e.g. 2026-11-23T10:00:00+03:00.",
        "offset": "The UTC offset must lie between -14:00 and +14:00.",
        "out_of_range": "Must lie between 1970-01-01T00:00:00Z and 2100-01-01T00:00:00Z.",
    }

    def to_internal_value(self, value):
        if not isinstance(value, str) or not RFC3339.match(value):
            self.fail("not_rfc3339")
        text = value.upper().replace("Z", "+00:00")
        if "." in text:  # Python keeps microseconds; RFC 3339 allows nanoseconds.
            head, _, tail = text.partition(".")
            digits = re.match(r"\d+", tail).group()
            text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits) :]}"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.fail("not_rfc3339")
        if abs(value.utcoffset()) > MAX_OFFSET:
            self.fail("offset")
        # Compared as instants: 9999-12-31T23:59:59-01:00 is in year 10000 in UTC.
        if not EARLIEST <= value < LATEST:
            self.fail("out_of_range")
        return value


class ReadableDateTimeField(models.DateTimeField):
    """A datetime column that reads back an instant Python cannot hold as NULL, not a crash.

    Rows written before Herald bounded its dates may hold year 10000 or 1 BC (PostgreSQL
    stores them; Python's datetime cannot): selecting one raised in the database driver and
    broke every page that listed the row. The SELECT maps values outside EARLIEST_READABLE …
    LATEST_READABLE to NULL in SQL, so the driver never sees them. Migrations see a plain
    DateTimeField: the column is unchanged.
    """

    def select_format(self, compiler, sql, params):
        sql, params = super().select_format(compiler, sql, params)
        if compiler.connection.vendor == "sqlite":
            # SQLite keeps "YYYY-MM-DD HH:MM:SS[.ffffff]" text: a five-digit year breaks the
            # string order, so the fifth character must be the first dash.
            bounds = [
                EARLIEST_READABLE.strftime("%Y-%m-%d %H:%M:%S"),
                LATEST_READABLE.strftime("%Y-%m-%d %H:%M:%S"),
            ]
            return (
                f"CASE WHEN substr({sql}, 5, 1) = '-' AND {sql} BETWEEN %s AND %s THEN {sql} END",
                (*params, *params, *bounds, *params),
            )
        return (
            f"CASE WHEN {sql} BETWEEN %s AND %s THEN {sql} END",
            (*params, EARLIEST_READABLE, LATEST_READABLE, *params),
        )

    def deconstruct(self):
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs


# A day inside Python's datetime range at both ends: any time zone can still display them.
EARLIEST_READABLE = datetime(1, 1, 2, tzinfo=UTC)
LATEST_READABLE = datetime(9999, 12, 30, tzinfo=UTC)
