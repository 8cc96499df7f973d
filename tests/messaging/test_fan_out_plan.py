"""The fan-out's device reads on PostgreSQL: a plain audience walks the targetable-device index
in id order whatever the statistics say (a fresh, never-analyzed table of a million devices
otherwise reads every device of the tenant and sorts them, for each chunk), and the planner
settings that make it so hold for those reads only."""

from contextlib import contextmanager

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from audiences.rules import parse
from devices.models import AppUser, Device, hash_token
from messaging import services
from messaging.models import Message, MessageRecipient
from messaging.services import MessageInput, create_message
from tenants.models import Tenant
from tests.task_queue import run_queue

pytestmark = pytest.mark.postgres

DEVICE_TABLES = ("devices_device", "devices_appuser")
DEFAULTS = {"enable_bitmapscan": "on", "enable_sort": "on", "cursor_tuple_fraction": "0.1"}


def make_devices(tenant, count: int, *, prefix: str) -> None:
    users = AppUser.objects.bulk_create(
        AppUser(tenant=tenant, app_user_id=f"{prefix}{i}", country="TR", language="tr") for i in range(count)
    )
    Device.objects.bulk_create(
        Device(
            tenant=tenant,
            user=user,
            token=f"{prefix}-tok-{i}",
            token_hash=hash_token(f"{prefix}-tok-{i}"),
            platform="android" if i % 3 else "ios",
            push_permission=i % 10 != 0,
        )
        for i, user in enumerate(users)
    )


def forget_statistics() -> None:
    """The device tables as a fresh install has them: never analyzed (undone with the test's
    transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pg_statistic WHERE starelid = ANY(%s::regclass[])", [list(DEVICE_TABLES)])
        cursor.execute(
            "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = ANY(%s::regclass[])",
            [list(DEVICE_TABLES)],
        )
        cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = ANY(%s)", [list(DEVICE_TABLES)])
        assert cursor.fetchone() == (0,)


def reads_devices(sql: str) -> bool:
    return sql.lstrip().startswith("SELECT") and 'FROM "devices_device"' in sql


@contextmanager
def plans_of_device_reads():
    """The plan of each read of the devices table, EXPLAINed as it runs (the settings of the
    moment in force) on the same connection."""
    plans = []

    def explain(execute, sql, params, many, context):
        if reads_devices(sql):
            with connection.connection.cursor() as raw:
                raw.execute("EXPLAIN " + sql, params)
                plans.append("\n".join(line for (line,) in raw.fetchall()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain):
        yield plans


@contextmanager
def settings_around_other_statements():
    """The planner settings in force at every statement but the device reads and the SET and
    RESET around them."""
    seen = set()

    def look(execute, sql, params, many, context):
        if not reads_devices(sql) and not sql.lstrip().startswith(("SET", "RESET")):
            with connection.connection.cursor() as raw:
                raw.execute(
                    "SELECT current_setting('enable_bitmapscan'), current_setting('enable_sort'), "
                    "current_setting('cursor_tuple_fraction')"
                )
                seen.add(raw.fetchone())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(look):
        yield seen


def current_settings() -> dict[str, str]:
    with connection.cursor() as cursor:
        return {name: (cursor.execute(f"SHOW {name}"), cursor.fetchone()[0])[1] for name in DEFAULTS}


@pytest.fixture
def devices(postgres_only, tenant, settings):
    settings.FANOUT_CHUNK_SIZE = 100
    other = Tenant.objects.create(name="Other", tenant_id="other")
    # Enough that, without statistics, PostgreSQL would rather read them all and sort.
    make_devices(other, 3000, prefix="o")
    make_devices(tenant, 5000, prefix="a")
    make_devices(other, 3000, prefix="p")


@pytest.mark.parametrize(
    ("audience", "params"),
    [
        ("all", {}),
        ("filter", {"platforms": ["android"]}),
        ("filter", {"countries": ["TR"], "languages": ["tr"]}),
    ],
    ids=["all", "filter on the device", "filter on the user"],
)
def test_a_plain_audiences_fan_out_walks_the_device_index_in_id_order_on_a_never_analyzed_table(
    devices, tenant, audience, params
):
    forget_statistics()
    spec = MessageInput(title="Hi", body="x", audience=audience, audience_params=params)
    message, _ = create_message(tenant=tenant, spec=spec)

    with plans_of_device_reads() as plans:
        services.fan_out(message_id=message.pk)

    assert plans, "the fan-out read no devices"
    for plan in plans:
        assert "Index Scan using device_targetable_id_idx on devices_device" in plan, plan
        assert "Sort" not in plan and "Bitmap" not in plan, plan
    assert message.deliveries.exists()


def test_a_segments_fan_out_walks_its_snapshot_in_device_order_on_a_never_analyzed_table(
    devices, tenant, settings
):
    settings.FANOUT_TASK_CHUNKS = 100  # the whole fan-out in this task
    forget_statistics()
    rules = parse({"include": [[{"type": "property", "property": "platform", "op": "in", "value": ["ios"]}]]})
    spec = MessageInput(title="Hi", body="x", audience="rules", audience_params={"rules": rules})
    message, _ = create_message(tenant=tenant, spec=spec)

    with plans_of_device_reads() as plans:
        services.fan_out(message_id=message.pk)

    assert plans, "the fan-out read no devices"
    for plan in plans:  # the snapshot's next rows, each joined to its device: not every device walked
        assert "messaging_snapshotdevice_pkey" in plan, plan
        assert "Sort" not in plan and "Bitmap" not in plan and "device_targetable_id_idx" not in plan, plan
    ios = Device.objects.filter(tenant=tenant, platform="ios", push_permission=True)
    assert message.deliveries.count() == ios.count() > 0


def test_a_campaign_sends_fan_out_probes_its_list_per_device_instead_of_joining_all_of_it(
    devices, tenant, settings
):
    settings.FANOUT_TASK_CHUNKS = 100
    forget_statistics()
    message = Message.objects.create(
        tenant=tenant,
        title="Hi",
        body="x",
        audience="recipients",
        status="sending",
        started_at=timezone.now(),
    )
    listed = AppUser.objects.filter(tenant=tenant).order_by("pk")[::7]
    MessageRecipient.objects.bulk_create(MessageRecipient(message=message, user=user) for user in listed)

    with plans_of_device_reads() as plans:
        services.fan_out(message_id=message.pk)

    assert plans, "the fan-out read no devices"
    for plan in plans:  # without OFFSET 0: a (hash or nested-loop) semi join over the whole list, sorted
        assert "SubPlan" in plan and "Semi Join" not in plan and "Sort" not in plan, plan
    assert message.deliveries.count() == Device.objects.targetable().filter(user__in=listed).count() > 0


@pytest.fixture
def inside_fan_out(monkeypatch):
    """Whether a fan-out task (services.fan_out, a worker's or one a send task runs inline) is
    running now."""
    depth = []
    fan_out = services.fan_out

    def tracked(**kwargs):
        depth.append(1)
        try:
            return fan_out(**kwargs)
        finally:
            depth.pop()

    monkeypatch.setattr(services, "fan_out", tracked)
    return lambda: bool(depth)


@contextmanager
def settings_by_statement(where):
    """For every statement but SET and RESET: (where(), whether it reads devices, the planner
    settings in force)."""
    seen = []

    def look(execute, sql, params, many, context):
        if not sql.lstrip().startswith(("SET", "RESET")):
            with connection.connection.cursor() as raw:
                raw.execute(
                    "SELECT current_setting('enable_bitmapscan'), current_setting('enable_sort'), "
                    "current_setting('cursor_tuple_fraction')"
                )
                seen.append((where(), reads_devices(sql), raw.fetchone()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(look):
        yield seen


IN_ID_ORDER = ("off", "off", DEFAULTS["cursor_tuple_fraction"])


def test_the_planner_settings_of_the_fan_outs_device_reads_hold_for_the_fan_out_task_only(
    devices, tenant, settings, inside_fan_out
):
    settings.FANOUT_TASK_CHUNKS = 2  # the reads stop with devices left: a continuation is queued
    forget_statistics()
    plain, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"))
    rules = parse({"include": [[{"type": "property", "property": "language", "op": "in", "value": ["tr"]}]]})
    segment, _ = create_message(
        tenant=tenant,
        spec=MessageInput(title="Hi", body="x", audience="rules", audience_params={"rules": rules}),
    )

    with (
        CaptureQueriesContext(connection) as queries,
        settings_by_statement(inside_fan_out) as seen,
    ):
        for message in (plain, segment):
            services.fan_out(message_id=message.pk)
            Message.objects.get(pk=message.pk)  # the caller's next statement

    assert {s for inside, _, s in seen if not inside} == {tuple(DEFAULTS.values())}
    assert {s for _, reads, s in seen if reads} == {IN_ID_ORDER}
    sets = [q["sql"] for q in queries if q["sql"].startswith("SET enable_")]
    assert len(sets) == 2, "one SET for each task's reads, not one per page"
    assert current_settings() == DEFAULTS
    for message in (plain, segment):
        assert message.deliveries.count() == 200, "two chunks of 100: the task's share"


def test_the_planner_settings_are_set_back_when_a_fan_out_fails_mid_task(
    devices, tenant, settings, monkeypatch
):
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"))
    insert = services._insert_deliveries
    calls = []

    def fails_the_second_time(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the worker's bug")
        return insert(**kwargs)

    monkeypatch.setattr(services, "_insert_deliveries", fails_the_second_time)

    with pytest.raises(RuntimeError, match="the worker's bug"):
        services.fan_out(message_id=message.pk)

    assert current_settings() == DEFAULTS


def test_the_planner_settings_are_taken_back_with_a_fan_out_whose_transaction_fails(
    devices, tenant, settings, monkeypatch
):
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"))
    insert = services._insert_deliveries

    def fails_in_the_database(**kwargs):
        insert(**kwargs)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")

    monkeypatch.setattr(services, "_insert_deliveries", fails_in_the_database)

    # A caller's transaction: the failed statement aborts it, its rollback takes the SET back.
    with pytest.raises(DataError), transaction.atomic():
        services.fan_out(message_id=message.pk)

    assert current_settings() == DEFAULTS


def test_a_task_run_as_it_is_queued_inside_a_fan_outs_reads_runs_under_the_planners_defaults(
    devices, tenant, settings, inside_fan_out, monkeypatch
):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"), send=False)
    Message.objects.filter(pk=message.pk).update(status="sending", started_at=timezone.now())
    sending = []
    send_deliveries = services.send_deliveries

    def send(**kwargs):  # each chunk's send task, run by the backend as the fan-out queues it
        sending.append(1)
        try:
            return send_deliveries(**kwargs)
        finally:
            sending.pop()

    monkeypatch.setattr(services, "send_deliveries", send)

    with settings_by_statement(lambda: "send" if sending else "fan-out") as seen:
        services.fan_out(message_id=message.pk)

    assert {s for where, _, s in seen if where == "send"} == {tuple(DEFAULTS.values())}
    assert {s for _, reads, s in seen if reads} == {IN_ID_ORDER}, "the fan-out's own reads did not"
    assert current_settings() == DEFAULTS


def test_a_send_task_running_a_fan_out_continuation_inline_sends_on_under_the_planners_defaults(
    postgres_only, sandbox_server, tenant, settings, inside_fan_out
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    settings.FANOUT_CHUNK_SIZE = 2
    settings.FANOUT_TASK_CHUNKS = 2
    make_devices(tenant, 12, prefix="p")
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Hi", body="x"))

    with settings_by_statement(lambda: "fan-out" if inside_fan_out() else "other") as seen:
        run_queue()

    message.refresh_from_db()
    assert message.status == "completed"
    assert DBTaskResult.objects.filter(
        task_path="messaging.tasks.fan_out_message", return_value={"taken_by_running_send": True}
    ).exists(), "a send task ran a fan-out continuation"
    assert {s for where, _, s in seen if where == "other"} == {tuple(DEFAULTS.values())}
    assert {s for _, reads, s in seen if reads} == {IN_ID_ORDER}
    assert current_settings() == DEFAULTS
