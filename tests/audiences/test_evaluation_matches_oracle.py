"""The database's answer (one query, audiences.selectors) equals a pure-Python oracle's on random
users, devices, events and rule documents: on SQLite, and on PostgreSQL when DATABASE_URL names it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiences import selectors
from audiences.rules import parse
from devices.models import AppUser, Device, Event
from tenants.models import Tenant
from tests.audiences import oracle

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
NAMES = ["purchase", "app_open", "cart_add"]
KEYS = ["amount", "plan", "flag", "missing"]
# Small pools that overlap, so that comparisons meet equal, smaller and larger values often.
NUMBERS = st.sampled_from([-1, 0, 1, 49.5, 50, 50.0, 50.25, 120])
STRINGS = st.sampled_from(["50", "abc", "Abc", "gold", "golden", "gol", "", "é", "z", "Z"])
PARAM_VALUES = st.one_of(NUMBERS, STRINGS, st.booleans(), st.none(), st.just([1, 2]), st.just({"a": 1}))
SCALARS = st.one_of(NUMBERS, STRINGS)

users_st = st.lists(
    st.fixed_dictionaries(
        {
            "language": st.sampled_from(["tr", "en", ""]),
            "country": st.sampled_from(["TR", "DE", ""]),
            "timezone": st.sampled_from(["Europe/Istanbul", "UTC", ""]),
            "is_anonymous": st.booleans(),
            "first_seen_hours": st.integers(0, 24 * 40),
            "last_seen_hours": st.integers(0, 24 * 20),
        }
    ),
    min_size=1,
    max_size=6,
)
devices_st = st.lists(
    st.fixed_dictionaries(
        {
            "user": st.integers(0, 5),
            "platform": st.sampled_from(["android", "ios", "web"]),
            "is_active": st.booleans(),
            "push_permission": st.booleans(),
        }
    ),
    max_size=8,
)
event_st = st.fixed_dictionaries(
    {
        "user": st.integers(0, 5),
        "name": st.sampled_from(NAMES),
        "hours_ago": st.integers(0, 24 * 30),
        "params": st.dictionaries(st.sampled_from(KEYS[:3]), PARAM_VALUES, max_size=3),
    }
)
events_st = st.lists(event_st, max_size=25)
many_events_st = st.lists(event_st, min_size=10, max_size=40)

param_st = st.one_of(
    st.fixed_dictionaries(
        {
            "param": st.sampled_from(KEYS),
            "op": st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "≥", "≠"]),
            "value": SCALARS,
        }
    ),
    st.fixed_dictionaries(
        {"param": st.sampled_from(KEYS), "op": st.sampled_from(["=", "!="]), "value": st.booleans()}
    ),
    st.fixed_dictionaries(
        {
            "param": st.sampled_from(KEYS),
            "op": st.just("contains"),
            "value": st.sampled_from(["ol", "gold", "", "b", "é", "G"]),
        }
    ),
    st.fixed_dictionaries(
        {
            "param": st.sampled_from(KEYS),
            "op": st.just("in"),
            "value": st.lists(SCALARS, min_size=1, max_size=3),
        }
    ),
    st.fixed_dictionaries({"param": st.sampled_from(KEYS), "op": st.sampled_from(["exists", "not_exists"])}),
)
window_st = st.one_of(st.just({}), st.builds(lambda d: {"within_days": d}, st.integers(1, 31)))
SEEN = st.sampled_from(["first_seen", "last_seen"])
CODES = {"language": ["tr"], "country": ["TR", "DE"], "platform": ["android"], "timezone": ["UTC"]}
event_rule_st = st.builds(
    lambda name, op, window, params: {"type": "event", "event": name, "op": op, **window, "params": params},
    st.sampled_from(NAMES),
    st.sampled_from(["did", "did_not"]),
    window_st,
    st.lists(param_st, max_size=2),
)
rule_st = st.one_of(
    st.builds(
        lambda prop, op: {"type": "property", "property": prop, "op": op, "value": CODES[prop]},
        st.sampled_from(list(CODES)),
        st.sampled_from(["in", "not_in"]),
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("property"),
            "property": st.just("app_user_id"),
            "op": st.sampled_from(["in", "not_in"]),
            "value": st.lists(st.sampled_from([f"u{i}" for i in range(6)]), min_size=1),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("property"),
            "property": st.just("anonymous"),
            "op": st.just("="),
            "value": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("property"),
            "property": SEEN,
            "op": st.sampled_from(["within_days", "not_within_days"]),
            "value": st.integers(1, 30),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("property"),
            "property": SEEN,
            "op": st.sampled_from(["before", "after"]),
            "value": st.sampled_from(["2025-06-10", "2025-06-01T00:00:00+03:00", "2025-06-14T12:00:00Z"]),
        }
    ),
    event_rule_st,
    st.builds(
        lambda name, op, value, window, params: {
            "type": "event_count",
            "event": name,
            "op": op,
            "value": sorted(value) if op == "between" else value[0],
            **window,
            "params": params,
        },
        st.sampled_from(NAMES),
        st.sampled_from(["=", ">=", "<=", "between", "≥", "≤"]),
        st.lists(st.integers(0, 4), min_size=2, max_size=2),
        window_st,
        st.lists(param_st, max_size=1),
    ),
)
group_st = st.lists(rule_st, min_size=1, max_size=3)
document_st = st.fixed_dictionaries(
    {"include": st.lists(group_st, max_size=3), "exclude": st.lists(group_st, max_size=2)}
)


def load(tenant, users, devices, events):
    """Store the example; return it in the oracle's shape."""
    rows, out_users = [], []
    for i, u in enumerate(users):
        user = {
            "app_user_id": f"u{i}",
            "language": u["language"],
            "country": u["country"],
            "timezone": u["timezone"],
            "is_anonymous": u["is_anonymous"],
            "first_seen_at": NOW - timedelta(hours=u["first_seen_hours"]),
            "last_seen_at": NOW - timedelta(hours=u["last_seen_hours"]),
        }
        out_users.append(user)
        rows.append(AppUser.objects.create(tenant=tenant, **user))
    out_devices = []
    for j, d in enumerate(devices):
        owner = rows[d["user"] % len(rows)]
        device = {
            "token": f"t{j}",
            "user": owner.app_user_id,
            "platform": d["platform"],
            "is_active": d["is_active"],
            "push_permission": d["push_permission"],
        }
        out_devices.append(device)
        Device.objects.create(
            tenant=tenant,
            user=owner,
            token=device["token"],
            platform=d["platform"],
            is_active=d["is_active"],
            push_permission=d["push_permission"],
            deactivated_at=None if d["is_active"] else NOW,
        )
    out_events = []
    for k, e in enumerate(events):
        owner = rows[e["user"] % len(rows)]
        event = {
            "user": owner.app_user_id,
            "name": e["name"],
            "occurred_at": NOW - timedelta(hours=e["hours_ago"]),
            "params": e["params"],
        }
        out_events.append(event)
        Event.objects.create(
            tenant=tenant,
            user=owner,
            name=e["name"],
            occurred_at=event["occurred_at"],
            session_id="s",
            params=e["params"],
            fingerprint=f"f{k}",
        )
    return out_users, out_devices, out_events


def decoy(other):
    """Another tenant's user who matches almost anything: must never be counted."""
    user = AppUser.objects.create(
        tenant=other,
        app_user_id="u0",
        language="tr",
        country="TR",
        timezone="UTC",
        first_seen_at=NOW,
        last_seen_at=NOW,
    )
    Device.objects.create(tenant=other, user=user, token="t0", platform="android", push_permission=True)
    for k, name in enumerate(NAMES * 3):
        Event.objects.create(
            tenant=other,
            user=user,
            name=name,
            occurred_at=NOW,
            session_id="s",
            params={"amount": 60, "plan": "gold", "flag": True},
            fingerprint=f"d{k}",
        )


def check(users, devices, events, document):
    parsed = parse(document)
    with transaction.atomic():
        tenant = Tenant.objects.create(name="Oracle", tenant_id="oracle")
        decoy(Tenant.objects.create(name="Other", tenant_id="other"))
        o_users, o_devices, o_events = load(tenant, users, devices, events)

        found_users = set(selectors.users_matching(tenant, parsed, NOW).values_list("app_user_id", flat=True))
        found_devices = set(selectors.devices_matching(tenant, parsed, NOW).values_list("token", flat=True))
        size = selectors.count(tenant, parsed, NOW)
        transaction.set_rollback(True)

    expected_users = oracle.matching_users(parsed, o_users, o_devices, o_events, NOW)
    assert found_users == expected_users, parsed
    assert found_devices == oracle.matching_devices(parsed, o_users, o_devices, o_events, NOW), parsed
    assert size == {"users": len(expected_users), "devices": len(found_devices)}


EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.django_db
@EXAMPLES
@given(users=users_st, devices=devices_st, events=events_st, document=document_st)
def test_the_database_matches_the_same_users_and_devices_as_the_oracle(users, devices, events, document):
    check(users, devices, events, document)


@pytest.mark.django_db
@EXAMPLES
@given(users=users_st, events=many_events_st, rule=event_rule_st)
def test_event_param_filters_match_the_oracle(users, events, rule):
    # One event rule alone, over many events: every operator and type meets data often.
    check(users, [], events, {"include": [[rule]]})
