"""A deactivated tenant's pushes stop: scheduled, sending and retrying messages are cancelled
with a reason, from the admin, and any worker that picks up its work afterwards sends nothing."""

from datetime import timedelta

from django.utils import timezone

from messaging import services
from messaging.models import Delivery, Message
from messaging.services import MessageInput, create_message, recover_stalled
from tenants.models import Tenant

pytest_plugins = ["tests.staff_fixtures"]  # superuser


def schedule(tenant, *, minutes=30, title="Later"):
    message, _ = create_message(
        tenant=tenant,
        spec=MessageInput(title=title, body="x", schedule_at=timezone.now() + timedelta(minutes=minutes)),
    )
    return message


def change_form(tenant, **changes):
    data = {
        "name": tenant.name,
        "tenant_id": tenant.tenant_id,
        "created_at_0": "2026-01-01",
        "created_at_1": "00:00:00",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    if tenant.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_deactivating_a_tenant_in_the_admin_cancels_its_scheduled_push_with_a_reason(
    superuser, tenant, make_device, immediate_tasks
):
    make_device("tok-1")
    scheduled = schedule(tenant)
    draft, _ = create_message(tenant=tenant, spec=MessageInput(title="Draft", body="x"), send=False)

    form = change_form(tenant, is_active=None)
    response = superuser.post(f"/admin/tenants/tenant/{tenant.pk}/change/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    scheduled.refresh_from_db()
    draft.refresh_from_db()
    assert not tenant.is_active
    assert (scheduled.status, scheduled.error) == ("cancelled", services.TENANT_DEACTIVATED)
    assert draft.status == "draft"

    # Its due time comes: herald_beat starts nothing.
    Message.objects.filter(pk=scheduled.pk).update(schedule_at=timezone.now() - timedelta(hours=1))
    recover_stalled(grace=timedelta(0))
    scheduled.refresh_from_db()
    assert scheduled.status == "cancelled"
    assert not Delivery.objects.filter(message=scheduled).exists()


def test_the_admin_action_cancels_sending_and_retrying_messages_of_the_selected_tenants(
    superuser, tenant, other_tenant, sandbox, make_device, inbox
):
    make_device("sandbox-unavailable-1")  # answered 503: the delivery waits for a retry
    retrying, _ = create_message(tenant=tenant, spec=MessageInput(title="Retry", body="x"))
    assert retrying.deliveries.get().status == "retrying"
    theirs = schedule(other_tenant)

    response = superuser.post(
        "/admin/tenants/tenant/", {"action": "deactivate_tenants", "_selected_action": [tenant.pk]}
    )

    assert response.status_code == 302
    retrying.refresh_from_db()
    delivery = retrying.deliveries.get()
    assert retrying.status == "cancelled"
    assert (delivery.status, delivery.error_code, delivery.error_detail) == (
        "failed",
        "CANCELLED",
        services.TENANT_DEACTIVATED,
    )
    theirs.refresh_from_db()
    assert theirs.status == "scheduled", "another tenant's message is untouched"
    assert Tenant.objects.get(pk=other_tenant.pk).is_active


def test_a_worker_that_picks_up_an_inactive_tenants_work_sends_nothing_and_cancels_it(
    sandbox, tenant, make_device, inbox
):
    for i in range(3):
        make_device(f"tok-{i}", user=f"u{i}")
    scheduled = schedule(tenant)
    Message.objects.filter(pk=scheduled.pk).update(schedule_at=timezone.now() - timedelta(minutes=1))
    # Deactivated without the signal (a bulk UPDATE, or the tenant row changed by hand):
    # only the send path can notice.
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    recover_stalled(grace=timedelta(0))

    scheduled.refresh_from_db()
    assert (scheduled.status, scheduled.error) == ("cancelled", services.TENANT_DEACTIVATED)
    assert inbox() == {}


def test_a_send_task_claims_nothing_once_its_tenant_is_inactive(sandbox, tenant, make_device, inbox):
    for i in range(3):
        make_device(f"tok-{i}", user=f"u{i}")
    sandbox.state.configure()
    message, _ = create_message(tenant=tenant, spec=MessageInput(title="Now", body="x"), send=False)
    Message.objects.filter(pk=message.pk).update(status="sending", started_at=timezone.now())
    Delivery.objects.bulk_create([Delivery(message=message, device=d) for d in tenant.devices.all()])
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    services.send_deliveries(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == "cancelled"
    assert set(message.deliveries.values_list("status", "error_code")) == {("failed", "CANCELLED")}
    assert inbox() == {}
