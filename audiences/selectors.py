"""Who a rule document matches, asked of the database in one query.

Every rule becomes a condition on the outer row's user: a plain comparison for the user's
own fields, an EXISTS for platform and did / did-not rules, a COUNT subquery for event
counts. The same builder serves the AppUser query (the user is the row) and the Device
query (the user is the row's `user`), so a fan-out streams devices without first listing
users. Nothing is loaded into Python.

Event params are JSON. A param compares as a number only when the stored value is a JSON
number, as a string only when it is a JSON string (byte order, case-sensitive, on both
databases), so `amount > 50` never matches "70" and `plan = "50"` never matches 50. The
expressions below spell that per database (PostgreSQL jsonb, SQLite JSON1), guarding every
cast with a type check inside a CASE, since SQL promises no order of evaluation for AND.
"""

import contextlib
import functools
import operator
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    CharField,
    Exists,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.utils import timezone

from audiences import rules as rule_doc
from audiences.models import Segment
from devices.models import AppUser, Device, Event

# --- JSON params, spelled per database ---------------------------------------------------


class _Param(Func):
    """A value read from Event.params[key]; subclasses say how."""

    output_field = CharField()

    def __init__(self, key: str):
        super().__init__(F("params"))
        self.key = key

    def as_sql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            return self.postgresql(column, list(params))
        if connection.vendor == "sqlite":
            return self.sqlite(column, list(params))
        raise NotImplementedError(f"segments do not support {connection.vendor}")

    def _path(self) -> str:
        return f'$."{self.key}"'  # keys are checked by rules.PARAM_NAME: no quotes, no escapes


class ParamKind(_Param):
    """number, string, true, false, null, object or array; NULL when the key is absent."""

    def postgresql(self, column, params):
        sql = (
            f"CASE jsonb_typeof({column} -> %s) WHEN 'boolean' THEN ({column} ->> %s) "
            f"ELSE jsonb_typeof({column} -> %s) END"
        )
        return sql, [*params, self.key, *params, self.key, *params, self.key]

    def sqlite(self, column, params):
        sql = (
            f"CASE json_type({column}, %s) WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
            f"WHEN 'text' THEN 'string' ELSE json_type({column}, %s) END"
        )
        return sql, [*params, self._path(), *params, self._path()]


class ParamNumber(_Param):
    """The param as a float when it is a JSON number, else NULL."""

    output_field = FloatField()

    def postgresql(self, column, params):
        sql = (
            f"CASE WHEN jsonb_typeof({column} -> %s) = 'number' "
            f"AND abs(({column} -> %s)::numeric) < 1e300 THEN ({column} -> %s)::float8 END"
        )
        return sql, [*params, self.key, *params, self.key, *params, self.key]

    def sqlite(self, column, params):
        sql = (
            f"CASE WHEN json_type({column}, %s) IN ('integer', 'real') "
            f"THEN CAST(json_extract({column}, %s) AS REAL) END"
        )
        return sql, [*params, self._path(), *params, self._path()]


class ParamText(_Param):
    """The param as text when it is a JSON string, else NULL; compared byte by byte."""

    def postgresql(self, column, params):
        sql = f"(CASE WHEN jsonb_typeof({column} -> %s) = 'string' THEN {column} ->> %s END) COLLATE \"C\""
        return sql, [*params, self.key, *params, self.key]

    def sqlite(self, column, params):
        sql = f"CASE WHEN json_type({column}, %s) = 'text' THEN json_extract({column}, %s) END"
        return sql, [*params, self._path(), *params, self._path()]


class Compare(Func):
    """`lhs op rhs` as a condition; NULL (a missing or mistyped param) matches nothing."""

    output_field = BooleanField()
    OPERATORS = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}

    def __init__(self, lhs, op: str, rhs):
        super().__init__(lhs, rhs if hasattr(rhs, "resolve_expression") else Value(rhs))
        self.op = self.OPERATORS[op]

    def as_sql(self, compiler, connection, **extra):
        lhs, lhs_params = compiler.compile(self.source_expressions[0])
        rhs, rhs_params = compiler.compile(self.source_expressions[1])
        return f"({lhs} {self.op} {rhs})", [*lhs_params, *rhs_params]


class Contains(Func):
    """Whether the text holds the substring, case-sensitively on both databases."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra):
        text, text_params = compiler.compile(self.source_expressions[0])
        part, part_params = compiler.compile(self.source_expressions[1])
        function = "strpos" if connection.vendor == "postgresql" else "instr"
        return f"({function}({text}, {part}) > 0)", [*text_params, *part_params]


def _param_condition(param: dict) -> Q:
    key, op, value = param["param"], param["op"], param.get("value")
    if op in ("exists", "not_exists"):
        return Q(IsNull(ParamKind(key), present=op == "exists"))  # the kind is NULL when absent
    if op == "contains":
        return Q(Contains(ParamText(key), Value(value)))
    if op == "in":
        numbers = [float(v) for v in value if not isinstance(v, str)]
        strings = [v for v in value if isinstance(v, str)]
        either = Q()
        for number in numbers:
            either |= Q(Compare(ParamNumber(key), "=", number))
        for string in strings:
            either |= Q(Compare(ParamText(key), "=", string))
        return either
    if isinstance(value, bool):
        return Q(Compare(ParamKind(key), op, "true" if value else "false"))
    if isinstance(value, str):
        return Q(Compare(ParamText(key), op, value))
    return Q(Compare(ParamNumber(key), op, float(value)))


def param_filters(params: list[dict]) -> Q:
    """Events whose params pass every (parsed) filter, as segment event rules apply them:
    for a triggered campaign's filters, with the same operators and type rules."""
    condition = Q()
    for param in params or []:
        condition &= _param_condition(param)
    return condition


class IsNull(Func):
    output_field = BooleanField()

    def __init__(self, expression, *, present: bool):
        super().__init__(expression)
        self.template = "(%(expressions)s IS NOT NULL)" if present else "(%(expressions)s IS NULL)"


# --- Rules into conditions ----------------------------------------------------------------


class _Builder:
    """Conditions on the user of the outer row: the AppUser itself (prefix "") or a Device's
    user (prefix "user__")."""

    def __init__(self, *, tenant, now: datetime, prefix: str):
        self.tenant, self.now, self.prefix = tenant, now, prefix
        self.user_ref = OuterRef("pk" if not prefix else "user_id")

    def document(self, document: dict) -> Q:
        condition = Q()  # no include group: everyone
        if document["include"]:
            groups = [self.group(group) for group in document["include"]]
            condition = functools.reduce(operator.or_, groups)
        for group in document["exclude"]:
            condition &= ~self.group(group)
        return condition

    def group(self, group: list[dict]) -> Q:
        condition = Q()
        for rule in group:
            condition &= self.rule(rule)
        return condition

    def rule(self, rule: dict) -> Q:
        if rule["type"] == "property":
            return self.property(rule)
        events = self.events(rule)
        if rule["type"] == "event":
            did = Q(Exists(events))
            return did if rule["op"] == "did" else ~did
        counted = Subquery(
            events.annotate(n=Func(F("pk"), function="COUNT")).values("n"), output_field=IntegerField()
        )
        if rule["op"] == "between":
            low, high = rule["value"]
            return Q(Compare(counted, ">=", low)) & Q(Compare(counted, "<=", high))
        return Q(Compare(counted, rule["op"], rule["value"]))

    def events(self, rule: dict) -> QuerySet:
        events = Event.objects.filter(tenant_id=self.tenant.pk, user_id=self.user_ref, name=rule["event"])
        if rule.get("within_days"):
            events = events.filter(occurred_at__gte=self.now - timedelta(days=rule["within_days"]))
        for param in rule["params"]:
            events = events.filter(_param_condition(param))
        return events.order_by()

    def property(self, rule: dict) -> Q:
        prop, op, value = rule["property"], rule["op"], rule["value"]
        p = self.prefix
        if prop == "platform":
            has = Q(Exists(Device.objects.filter(user_id=self.user_ref, is_active=True, platform__in=value)))
            return has if op == "in" else ~has
        if prop in rule_doc.PROPERTY_LISTS:
            column = {
                "language": "language",
                "country": "country",
                "timezone": "timezone",
                "app_user_id": "app_user_id",
            }[prop]
            matched = Q(**{f"{p}{column}__in": value})
            return matched if op == "in" else ~matched
        if prop == "anonymous":
            return Q(**{f"{p}is_anonymous": value})
        column = f"{p}{prop}_at"
        if op == "within_days":
            return Q(**{f"{column}__gte": self.now - timedelta(days=value)})
        if op == "not_within_days":
            return Q(**{f"{column}__lt": self.now - timedelta(days=value)})
        moment = rule_doc.parse_date(value)
        return Q(**{f"{column}__lt": moment}) if op == "before" else Q(**{f"{column}__gt": moment})


def users_matching(tenant, rules: dict, now: datetime | None = None) -> QuerySet[AppUser]:
    """The tenant's app users a (parsed) rule document matches at `now`."""
    condition = _Builder(tenant=tenant, now=now or timezone.now(), prefix="").document(rules)
    return AppUser.objects.filter(tenant=tenant).filter(condition)


def devices_matching(tenant, rules: dict, now: datetime | None = None) -> QuerySet[Device]:
    """The targetable devices (active, push allowed) of the users a rule document matches."""
    condition = _Builder(tenant=tenant, now=now or timezone.now(), prefix="user__").document(rules)
    return Device.objects.targetable().filter(tenant=tenant).filter(condition)


@contextlib.contextmanager
def jit_off():
    """The statements run inside this run without PostgreSQL's JIT compilation, in one
    transaction: rule-evaluating statements that run once and end before compiled code
    pays off (a segment's counts; a fan-out's snapshot INSERT … SELECT). A segment's count
    over a million users costs enough to pass `jit_above_cost`, and compiling its
    expressions took 100–200 ms of a ~1 s query (bench/README.md, "Segments") while saving
    less than that. SET LOCAL lasts to the end of the transaction, so it is set back once
    the statements are done."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit TO DEFAULT")


def count(tenant, rules: dict, now: datetime | None = None) -> dict[str, int]:
    """A segment's live size: {"users": …, "devices": …} (devices that allow pushes).

    One query, the rules evaluated once: the matching users' ids are a MATERIALIZED CTE,
    counted, and joined to the tenant's targetable devices (an index-only scan of
    `device_targetable_user_idx`). Counting users and then devices_matching() would run
    every rule twice, the event rules' scans of the events table included (bench/README.md,
    "Segments"). A device's user is of the device's tenant, so the devices counted are
    devices_matching()'s (tests/audiences check the two against an oracle)."""
    now = now or timezone.now()
    if _only_user_columns(rules):
        # Rules on the user's own columns cost little to run twice, and two plain counts keep
        # PostgreSQL's parallel workers, which a MATERIALIZED CTE forgoes: "dormant 7 days"
        # (767,000 of 1,000,000 users) took 1.0 s this way against 1.6 s through the CTE.
        with jit_off():
            return {
                "users": users_matching(tenant, rules, now).count(),
                "devices": devices_matching(tenant, rules, now).count(),
            }
    users_sql, users_params = (
        users_matching(tenant, rules, now).order_by().values("pk").query.sql_with_params()
    )
    targetable = Device.objects.targetable().filter(tenant=tenant).order_by().values("user_id")
    devices_sql, devices_params = targetable.query.sql_with_params()
    # A join, not `IN (SELECT … FROM matched)`: the planner knows no statistics of a CTE and
    # guesses 200 distinct ids, so an IN made it de-duplicate the ids and probe the devices
    # index once per matching user (767,000 probes for "dormant 7 days"). The ids are
    # primary keys, distinct already.
    sql = (
        f"WITH matched (user_id) AS MATERIALIZED ({users_sql}) "
        f"SELECT (SELECT COUNT(*) FROM matched), "
        f"(SELECT COUNT(*) FROM ({devices_sql}) AS targetable "
        f"INNER JOIN matched ON matched.user_id = targetable.user_id)"
    )
    with jit_off(), connection.cursor() as cursor:
        cursor.execute(sql, [*users_params, *devices_params])
        users, devices = cursor.fetchone()
    return {"users": users, "devices": devices}


def _only_user_columns(rules: dict) -> bool:
    """Whether every rule reads only the user's own row: no event, event count or platform
    (which reads the user's devices)."""
    groups = [*rules.get("include", []), *rules.get("exclude", [])]
    return all(
        rule.get("type") == "property" and rule.get("property") != "platform"
        for group in groups
        for rule in group
    )


def sample_users(tenant, rules: dict, now: datetime | None = None, limit: int = 20) -> list[AppUser]:
    """A few matching users, the most recently seen first (the editor's "show matching users")."""
    return list(users_matching(tenant, rules, now).order_by("-last_seen_at", "-pk")[:limit])


def segment_rules(*, tenant, segment_id) -> dict | None:
    """A segment's rules, ready to evaluate (`rules.stored`), or None when the tenant has no
    such segment (any more); raises RuleError when its stored rules cannot be used."""
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        return None
    found = Segment.objects.filter(tenant=tenant, pk=segment_id).values_list("rules", flat=True)
    if not found:
        return None
    return rule_doc.stored(found[0])
