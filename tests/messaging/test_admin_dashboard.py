"""The dashboard on the admin's front page: the user's tenants only, charts drawn as SVG."""

from datetime import timedelta

import pytest
from django.utils import timezone

from devices.models import TokenRotation
from messaging import charts
from messaging.models import Delivery, Message
from messaging.selectors import dashboard
from tests.staff import make_delivery, make_device, make_message, signed_in, staff_user

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant


def activity(tenant, *, sent: int, failed: int, opened: int, days_ago: int = 1, prefix: str = ""):
    when = timezone.now() - timedelta(days=days_ago)
    message = make_message(tenant, title=f"{prefix}message", created_at=when)
    for i in range(sent + failed):
        device = make_device(
            tenant, f"{prefix}tok-{days_ago}-{i}-" + "x" * 20, user=f"{prefix}u{days_ago}{i}"
        )
        ok = i < sent
        make_delivery(
            message,
            device,
            status=Delivery.Status.SENT if ok else Delivery.Status.FAILED,
            sent_at=when if ok else None,
            next_attempt_at=when,
            error_code="" if ok else "UNREGISTERED",
            opened_at=when if i < opened else None,
        )
    return message


def test_the_dashboard_counts_only_the_users_tenants(tenant, other_tenant):
    activity(tenant, sent=3, failed=1, opened=2)
    activity(other_tenant, sent=50, failed=0, opened=0, prefix="g")

    mine = dashboard(tenant_ids=[tenant.pk])

    assert (mine.messages, mine.sent, mine.failed, mine.opened) == (1, 3, 1, 2)
    assert mine.success_rate == 75 and mine.open_rate == pytest.approx(66.67, abs=0.01)
    assert mine.active_devices == 4


def test_the_front_page_shows_the_dashboard_of_the_users_tenants(viewer, tenant, other_tenant):
    activity(tenant, sent=3, failed=1, opened=2)
    activity(other_tenant, sent=50, failed=0, opened=0, prefix="globex-")

    page = viewer.get("/admin/").content.decode()

    assert "Dashboard" in page and "Acme · last 30 days" in page
    assert page.count('<svg class="hc-chart"') == 5
    assert "Delivered</span><strong>3</strong>" in page
    assert "globex-message" not in page and "Globex" not in page


def test_the_dashboard_ignores_a_tenant_the_user_may_not_see(viewer, tenant, other_tenant):
    activity(other_tenant, sent=50, failed=0, opened=0, prefix="globex-")

    page = viewer.get(f"/admin/?tenant={other_tenant.pk}&days=7").content.decode()

    assert "globex-message" not in page and "Delivered</span><strong>0</strong>" in page
    assert "last 7 days" in page


def test_a_member_of_two_tenants_can_focus_on_one(tenant, other_tenant):
    user = staff_user("two", tenant=tenant, role="viewer")
    user.memberships.create(tenant=other_tenant, role="viewer")
    activity(tenant, sent=3, failed=0, opened=0)
    activity(other_tenant, sent=5, failed=0, opened=0, prefix="g")
    client = signed_in(user)

    assert "Delivered</span><strong>8</strong>" in client.get("/admin/").content.decode()
    focused = client.get(f"/admin/?tenant={other_tenant.pk}").content.decode()
    assert "Delivered</span><strong>5</strong>" in focused and "Globex · last 30 days" in focused


def test_a_superuser_sees_the_whole_installation(superuser, tenant, other_tenant):
    activity(tenant, sent=3, failed=0, opened=0)
    activity(other_tenant, sent=5, failed=0, opened=0, prefix="g")

    assert "Delivered</span><strong>8</strong>" in superuser.get("/admin/").content.decode()


def test_only_editors_see_the_compose_button_on_the_dashboard(viewer, editor):
    assert "Compose a push" not in viewer.get("/admin/").content.decode()
    assert "Compose a push" in editor.get("/admin/").content.decode()


def test_deliveries_and_opens_fall_on_their_days(tenant):
    activity(tenant, sent=2, failed=2, opened=1, days_ago=3)
    activity(tenant, sent=4, failed=0, opened=0, days_ago=0, prefix="t")

    board = dashboard(tenant_ids=[tenant.pk], days=7)

    assert len(board.days) == 7 and board.days[-1] == timezone.localdate()
    assert (board.sent, board.failed, board.opened) == (6, 2, 1)
    assert board.charts["success"].count("<circle") == 2  # two days with deliveries: 50 % and 100 %


def test_rotations_and_deactivations_are_counted_per_day(tenant):
    device = make_device(tenant, "tok-rot-" + "r" * 20)
    TokenRotation.objects.create(device=device, old_token="old", old_token_hash="h" * 64, new_token="new")
    make_device(tenant, "tok-dead-" + "d" * 20).deactivate(reason="UNREGISTERED")

    board = dashboard(tenant_ids=[tenant.pk])

    assert (board.rotations, board.deactivations) == (1, 1)
    assert board.deactivation_reasons == [("UNREGISTERED", 1)]
    assert [(p.label, p.active) for p in board.platforms] == [("Android", 1), ("iOS", 0), ("Web", 0)]


def test_cancelled_deliveries_are_not_failures(tenant):
    message = make_message(tenant, status=Message.Status.CANCELLED)
    make_delivery(
        message,
        make_device(tenant, "tok-c-" + "c" * 20),
        status=Delivery.Status.FAILED,
        error_code="CANCELLED",
    )

    assert dashboard(tenant_ids=[tenant.pk]).failed == 0


def test_charts_escape_their_text_and_say_when_there_is_nothing():
    days = [timezone.localdate()]
    svg = charts.bar_chart(
        days=days, label="<script>", series=[charts.Series("<b>", "hc-ok", [0])], empty="Nothing <here>"
    )

    assert "<script>" not in svg and "&lt;script&gt;" in svg and "Nothing &lt;here&gt;" in svg


def test_axis_tops_are_round_numbers_with_whole_halves():
    assert [charts.nice_ceiling(v) for v in (0, 1, 3, 7, 11, 45, 99, 101, 1234)] == [
        2,
        2,
        4,
        8,
        20,
        60,
        100,
        200,
        2000,
    ]


def test_recent_messages_are_what_staff_composed_not_a_back_ends_one_user_pushes(viewer, tenant):
    make_message(
        tenant,
        title="Weekend sale",
        source=Message.Source.ADMIN,
        created_at=timezone.now() - timedelta(hours=1),
    )
    for i in range(10):
        make_message(tenant, title=f"Your order {i} has shipped", source=Message.Source.DEVELOPER_PUSH)

    page = viewer.get("/admin/").content.decode()

    assert "Weekend sale" in page
    assert "has shipped" not in page
