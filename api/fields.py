"""Strict serializer fields for the API.

DRF's own fields coerce: 123 becomes "123", "yes" becomes True. A client that
sends the wrong type has a bug it should hear about.
"""

import re
from datetime import datetime

from rest_framework import fields


class StrictCharField(fields.CharField):
    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        if self.max_length is not None and len(data) > self.max_length:
            # As documented (maxLength): the string sent, before surrounding spaces are trimmed.
            raise fields.ValidationError(
                f"Ensure this field has no more than {self.max_length} characters.", code="max_length")
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


RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


class RFC3339DateTimeField(fields.DateTimeField):
    """An RFC 3339 timestamp that must carry its offset: 2026-11-23T10:00:00+03:00."""

    default_error_messages = {
        "not_rfc3339": "Must be an RFC 3339 timestamp with an offset, e.g. 2026-11-23T10:00:00+03:00.",
    }

    def to_internal_value(self, value):
        if not isinstance(value, str) or not RFC3339.match(value):
            self.fail("not_rfc3339")
        text = value.upper().replace("Z", "+00:00")
        if "." in text:  # Python keeps microseconds; RFC 3339 allows nanoseconds.
            head, _, tail = text.partition(".")
            digits = re.match(r"\d+", tail).group()
            text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits):]}"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            self.fail("not_rfc3339")
