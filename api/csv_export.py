"""Streamed CSV answers that are safe to open in a spreadsheet.

Rows come from an iterator (a queryset's ``.values_list().iterator()``), are written a few
hundred at a time, and are never all in memory: a million-row export costs the memory of
one chunk. A cell that a spreadsheet would read as a formula (starting with = + - @, a
tab or a carriage return) gets a leading apostrophe (OWASP's CSV-injection advice).
"""

import csv
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.http import StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500


def safe_cell(value) -> str:
    """A value as CSV text: timestamps in ISO 8601, booleans as true/false, None empty, and
    any text a spreadsheet would evaluate defused with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


class _Line:
    """A file whose write() returns what it was given: csv.writer then yields lines."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence]) -> Iterable[str]:
    """The CSV text of a header and rows, in chunks of ROWS_PER_CHUNK lines."""
    writer = csv.writer(_Line())
    chunk = [writer.writerow(header)]
    for row in rows:
        chunk.append(writer.writerow([safe_cell(value) for value in row]))
        if len(chunk) >= ROWS_PER_CHUNK:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def csv_response(*, header: Sequence[str], rows: Iterable[Sequence], filename: str) -> StreamingHttpResponse:
    """A streamed text/csv attachment."""
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class IgnoreAcceptNegotiation:
    """Content negotiation for views that answer CSV: errors are JSON whatever Accept says.

    A CSV endpoint's success is a streamed response that no renderer touches; what goes
    through a renderer is an error body, which is JSON. Without this, a client sending
    ``Accept: text/csv`` would get 406 instead of its CSV.
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
