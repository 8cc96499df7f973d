"""The rule document: what a segment says, checked and normalised before anything is stored.

A document (version 1)::

    {"version": 1,
     "include": [[rule, rule], [rule]],   # groups ORed; rules inside a group ANDed
     "exclude": [[rule]]}                 # users any exclude group matches are taken out

No include group means everyone. Three kinds of rule:

- ``{"type": "property", "property": "language", "op": "in", "value": ["tr", "az"]}`` —
  language, country, timezone, platform (any of the user's active devices), app_user_id
  (``in`` / ``not_in`` a list); anonymous (``=`` true/false); first_seen and last_seen
  (``within_days`` / ``not_within_days`` N, ``before`` / ``after`` a date).
- ``{"type": "event", "event": "purchase", "op": "did", "within_days": 14,
  "params": [{"param": "amount", "op": ">", "value": 50}]}`` — ``did`` / ``did_not``.
- ``{"type": "event_count", "event": "app_open", "op": ">=", "value": 3, "within_days": 7}`` —
  ``=``, ``>=``, ``<=``, or ``between`` with ``[low, high]`` (both included).

`parse` checks a document and returns it normalised (operators in their ASCII spelling,
codes in their canonical case), or raises `RuleError` naming the path at fault:
``include[0][1].params[0].op: unknown operator "~"``.
"""

import math
import re
from datetime import UTC, date, datetime

from django.conf import settings

from tenants.codes import COUNTRIES, LANGUAGES, time_zones

VERSION = 1
# Events are kept this long unless settings say otherwise; a window cannot reach further back.
DEFAULT_EVENT_RETENTION_DAYS = 180
MAX_GROUPS = 20  # include and exclude groups together
MAX_RULES = 50  # rules in the whole document
MAX_PARAMS = 10  # param filters on one event rule
MAX_LIST = 10_000  # values in an app_user_id list
MAX_CODES = 500  # values in any other list
MAX_STRING = 1000
MAX_NUMBER = 1e15  # beyond this, floats on two databases stop agreeing
MAX_SEEN_DAYS = 36_500

PROPERTY_LISTS = ("language", "country", "timezone", "platform", "app_user_id")
PROPERTY_SEEN = ("first_seen", "last_seen")
PROPERTIES = (*PROPERTY_LISTS, "anonymous", *PROPERTY_SEEN)
PLATFORMS = ("android", "ios", "web")
LIST_OPS = ("in", "not_in")
SEEN_OPS = ("within_days", "not_within_days", "before", "after")
EVENT_OPS = ("did", "did_not")
COUNT_OPS = ("=", ">=", "<=", "between")
PARAM_OPS = ("=", "!=", ">", ">=", "<", "<=", "contains", "in", "exists", "not_exists")
ALIASES = {"==": "=", "≠": "!=", "<>": "!=", "≥": ">=", "≤": "<="}
# Param names: a letter or _ first (a digit-only key reads as an array index in JSON paths).
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")


class RuleError(ValueError):
    """A rule document that cannot be used; `path` names the part at fault."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def event_retention_days() -> int | None:
    """How far back events go: settings.RETENTION_EVENTS_DAYS, else 180 days; None when they
    are kept forever (0)."""
    days = int(getattr(settings, "RETENTION_EVENTS_DAYS", DEFAULT_EVENT_RETENTION_DAYS))
    return days or None


def parse(document) -> dict:
    """Check a rule document and return it normalised; raise RuleError with the path at fault."""
    return _document(document, retention=event_retention_days())


def _document(document, *, retention: int | None) -> dict:
    """`parse`'s work; `retention`: the longest event window allowed (None: any)."""
    if not isinstance(document, dict):
        raise RuleError("", "the rules must be a JSON object")
    _only(document, "", {"version", "include", "exclude"})
    version = document.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        raise RuleError("version", f"unknown version {_show(version)}; this Herald reads version {VERSION}")
    counter = {"rules": 0}
    groups = {}
    for side in ("include", "exclude"):
        raw = document.get(side, [])
        if not isinstance(raw, list):
            raise RuleError(side, "must be a list of groups (lists of rules)")
        groups[side] = [_group(group, f"{side}[{i}]", counter, retention) for i, group in enumerate(raw)]
    if len(groups["include"]) + len(groups["exclude"]) > MAX_GROUPS:
        raise RuleError("", f"too many groups: at most {MAX_GROUPS}")
    return {"version": VERSION, **groups}


def stored(document) -> dict:
    """A rule document read back from the database (a segment's, or a message's or a
    campaign's own rules), ready to evaluate: every reader of stored rules goes through here.

    The database holds what was saved then: an older Herald's document, or an operator's edit,
    may lack keys (they take their defaults: version 1, no include group, no exclude group) or
    say what no Herald accepts. It is checked and normalised as `parse` does; one that cannot be
    used raises RuleError with the path at fault, for the caller to report. It is never read
    as "everyone", nor left to fail while it is evaluated.

    One check is not made again: that an event window fits the event retention. That rule
    keeps a new window from promising events that are gone; a saved one, the retention
    shortened since, only finds fewer events, and must not stop the messages aimed at it."""
    return _document(document, retention=None)


def _group(group, path: str, counter: dict, retention: int | None) -> list[dict]:
    if not isinstance(group, list):
        raise RuleError(path, "a group must be a list of rules")
    if not group:
        raise RuleError(path, "an empty group: add a rule or remove the group")
    rules = []
    for i, rule in enumerate(group):
        counter["rules"] += 1
        if counter["rules"] > MAX_RULES:
            raise RuleError(f"{path}[{i}]", f"too many rules: at most {MAX_RULES} in a document")
        rules.append(_rule(rule, f"{path}[{i}]", retention))
    return rules


def _rule(rule, path: str, retention: int | None) -> dict:
    if not isinstance(rule, dict):
        raise RuleError(path, "a rule must be a JSON object")
    kind = rule.get("type")
    if kind == "property":
        return _property(rule, path)
    if kind == "event":
        return _event(rule, path, retention)
    if kind == "event_count":
        return _event_count(rule, path, retention)
    raise RuleError(f"{path}.type", f"unknown rule type {_show(kind)}; use property, event or event_count")


def _property(rule: dict, path: str) -> dict:
    _only(rule, path, {"type", "property", "op", "value"})
    prop = rule.get("property")
    if prop not in PROPERTIES:
        raise RuleError(
            f"{path}.property", f"unknown property {_show(prop)}; use one of {', '.join(PROPERTIES)}"
        )
    op = _op(rule, path)
    value = rule.get("value")
    vpath = f"{path}.value"
    if prop in PROPERTY_LISTS:
        if op not in LIST_OPS:
            raise RuleError(f"{path}.op", f"unknown operator {_show(op)} for {prop}; use in or not_in")
        limit = MAX_LIST if prop == "app_user_id" else MAX_CODES
        values = _string_list(value, vpath, limit)
        values = [_code(prop, v, f"{vpath}[{i}]") for i, v in enumerate(values)]
        return {"type": "property", "property": prop, "op": op, "value": values}
    if prop == "anonymous":
        if op != "=":
            raise RuleError(f"{path}.op", f"unknown operator {_show(op)} for anonymous; use =")
        if not isinstance(value, bool):
            raise RuleError(vpath, "must be true or false")
        return {"type": "property", "property": prop, "op": op, "value": value}
    if op not in SEEN_OPS:
        raise RuleError(f"{path}.op", f"unknown operator {_show(op)} for {prop}; use {', '.join(SEEN_OPS)}")
    if op in ("within_days", "not_within_days"):
        value = _whole(value, vpath, 1, MAX_SEEN_DAYS, "a number of days")
    else:
        parse_date(value, vpath)
    return {"type": "property", "property": prop, "op": op, "value": value}


def _event(rule: dict, path: str, retention: int | None) -> dict:
    _only(rule, path, {"type", "event", "op", "within_days", "params"})
    op = _op(rule, path)
    if op not in EVENT_OPS:
        raise RuleError(f"{path}.op", f"unknown operator {_show(op)} for an event; use did or did_not")
    return {
        "type": "event",
        "event": _event_name(rule, path),
        "op": op,
        **_window(rule, path, retention),
        "params": _params(rule, path),
    }


def _event_count(rule: dict, path: str, retention: int | None) -> dict:
    _only(rule, path, {"type", "event", "op", "value", "within_days", "params"})
    op = _op(rule, path)
    if op not in COUNT_OPS:
        raise RuleError(f"{path}.op", f"unknown operator {_show(op)} for a count; use =, >=, <= or between")
    value = rule.get("value")
    vpath = f"{path}.value"
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(vpath, "between needs [low, high]")
        low = _whole(value[0], f"{vpath}[0]", 0, 10**9, "a count")
        high = _whole(value[1], f"{vpath}[1]", 0, 10**9, "a count")
        if low > high:
            raise RuleError(vpath, f"low ({low}) is above high ({high})")
        value = [low, high]
    else:
        value = _whole(value, vpath, 0, 10**9, "a count")
    return {
        "type": "event_count",
        "event": _event_name(rule, path),
        "op": op,
        "value": value,
        **_window(rule, path, retention),
        "params": _params(rule, path),
    }


def _event_name(rule: dict, path: str) -> str:
    name = rule.get("event")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"{path}.event", "name the event, e.g. purchase")
    return _clean(name, f"{path}.event", 200)


def _window(rule: dict, path: str, retention: int | None) -> dict:
    if rule.get("within_days") is None:
        return {}
    # Never more than MAX_SEEN_DAYS, even with events kept forever or in a stored document that
    # skips the retention check: a window is a date to compute, and dates are bounded.
    days = _whole(rule["within_days"], f"{path}.within_days", 1, MAX_SEEN_DAYS, "a number of days")
    if retention is not None and days > retention:
        raise RuleError(
            f"{path}.within_days", f"{days} days is longer than the {retention} days events are kept"
        )
    return {"within_days": days}


def parse_params(params, path: str = "params") -> list[dict]:
    """Check a list of event param filters on its own (a triggered campaign's, say) as an
    event rule's `params`; raise RuleError naming `path[i].op` and the like."""
    if not isinstance(params, list):
        raise RuleError(path, "must be a list of param filters")
    if len(params) > MAX_PARAMS:
        raise RuleError(path, f"too many param filters: at most {MAX_PARAMS}")
    return [_param(p, f"{path}[{i}]") for i, p in enumerate(params)]


def event_name(value, path: str = "event") -> str:
    """Check an event name as event rules do (non-blank, at most 200 characters, no NUL)."""
    if not isinstance(value, str) or not value.strip():
        raise RuleError(path, "name the event, e.g. purchase")
    return _clean(value, path, 200)


def _params(rule: dict, path: str) -> list[dict]:
    params = rule.get("params", [])
    if not isinstance(params, list):
        raise RuleError(f"{path}.params", "must be a list of param filters")
    if len(params) > MAX_PARAMS:
        raise RuleError(f"{path}.params", f"too many param filters: at most {MAX_PARAMS}")
    return [_param(p, f"{path}.params[{i}]") for i, p in enumerate(params)]


def _param(param, path: str) -> dict:
    if not isinstance(param, dict):
        raise RuleError(path, "a param filter must be a JSON object")
    _only(param, path, {"param", "op", "value"})
    name = param.get("param")
    if not isinstance(name, str) or not PARAM_NAME.match(name):
        raise RuleError(f"{path}.param", "a param name: a letter or _ first, then letters, digits, _ . : -")
    op = _op(param, path)
    if op not in PARAM_OPS:
        raise RuleError(f"{path}.op", f"unknown operator {_show(op)}; use one of {' '.join(PARAM_OPS)}")
    vpath = f"{path}.value"
    value = param.get("value")
    if op in ("exists", "not_exists"):
        if "value" in param:
            raise RuleError(vpath, f"{op} takes no value")
        return {"param": name, "op": op}
    if op == "in":
        if not isinstance(value, list) or not value:
            raise RuleError(vpath, "in needs a non-empty list of numbers or strings")
        if len(value) > MAX_CODES:
            raise RuleError(vpath, f"too many values: at most {MAX_CODES}")
        value = [_scalar(v, f"{vpath}[{i}]", op) for i, v in enumerate(value)]
    elif op == "contains":
        if not isinstance(value, str):
            raise RuleError(vpath, f"contains compares strings, not {_kind(value)}")
        value = _clean(value, vpath, MAX_STRING)
    elif op in ("=", "!="):
        if not isinstance(value, bool):
            value = _scalar(value, vpath, op)
    else:
        value = _scalar(value, vpath, op)
    return {"param": name, "op": op, "value": value}


def _scalar(value, path: str, op: str):
    """A number or a string: numbers compare as numbers, strings as strings."""
    if isinstance(value, str):
        return _clean(value, path, MAX_STRING)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(path, f"{op} compares a number or a string, not {_kind(value)}")
    # An int is compared as it is: math.isfinite(10**400) would raise OverflowError (a 500).
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_NUMBER:
        raise RuleError(path, f"numbers must lie within ±{MAX_NUMBER:.0e}")
    return value


def _code(prop: str, value: str, path: str) -> str:
    if prop == "language":
        if value.lower() not in LANGUAGES:
            raise RuleError(path, f"{_show(value)} is not an ISO 639-1 language code")
        return value.lower()
    if prop == "country":
        if value.upper() not in COUNTRIES:
            raise RuleError(path, f"{_show(value)} is not an ISO 3166-1 country code")
        return value.upper()
    if prop == "timezone" and value not in time_zones():
        raise RuleError(path, f"{_show(value)} is not an IANA time zone name")
    if prop == "platform" and value not in PLATFORMS:
        raise RuleError(path, f"unknown platform {_show(value)}; use {', '.join(PLATFORMS)}")
    return value


def _string_list(value, path: str, limit: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise RuleError(path, "must be a non-empty list")
    if len(value) > limit:
        raise RuleError(path, f"too many values: at most {limit}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RuleError(f"{path}[{i}]", f"must be a string, not {_kind(item)}")
        out.append(_clean(item, f"{path}[{i}]", 255))
    return out


def _whole(value, path: str, low: int, high: int | None, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(path, f"must be {what} (a whole number), not {_kind(value)}")
    if value < low or (high is not None and value > high):
        raise RuleError(path, f"must be from {low}" + (f" to {high}" if high is not None else ""))
    return value


def parse_date(value, path: str = "value") -> datetime:
    """A date (2025-01-31, midnight UTC) or an RFC 3339 date-time with an offset."""
    if not isinstance(value, str):
        raise RuleError(path, f"must be a date such as 2025-01-31, not {_kind(value)}")
    _clean(value, path, 40)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RuleError(
            path, f"{_show(value)} is not a date (2025-01-31 or 2025-01-31T09:00:00+03:00)"
        ) from None
    if moment.tzinfo is None:
        raise RuleError(path, f"{_show(value)} has no offset; add Z or +03:00")
    return moment


def _op(obj: dict, path: str) -> str:
    op = obj.get("op")
    if not isinstance(op, str):
        raise RuleError(f"{path}.op", f"an operator is needed, not {_kind(op)}")
    _clean(op, f"{path}.op", 40)
    return ALIASES.get(op, op)


def _clean(value: str, path: str, limit: int) -> str:
    """Refuse what PostgreSQL cannot store or what no rule needs: NUL, lone surrogates, length."""
    if "\x00" in value:
        raise RuleError(path, "null characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RuleError(path, "lone surrogates (invalid Unicode) are not allowed") from None
    if len(value) > limit:
        raise RuleError(path, f"longer than {limit} characters")
    return value


def _only(obj: dict, path: str, allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        key = unknown[0][:40].encode("utf-8", "backslashreplace").decode()
        where = f"{path}.{key}" if path else key
        raise RuleError(where, "unknown field")


def _kind(value) -> str:
    if value is None:
        return "null"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _show(value) -> str:
    if isinstance(value, str):
        shown = value[:40].encode("utf-8", "backslashreplace").decode()
        return f'"{shown}"'
    return _kind(value)
