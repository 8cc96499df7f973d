"""Segments in the admin: roles, the list's sizes, the editor's checks and its preview view."""

import json

from django.db import connection
from django.test.utils import CaptureQueriesContext

from audiences.models import Segment
from devices.models import AppUser, Device
from tests.staff import make_device

pytest_plugins = ["tests.staff_fixtures"]

TURKISH = {"include": [[{"type": "property", "property": "language", "op": "in", "value": ["tr"]}]]}
PREVIEW = "/admin/audiences/segment/preview/"


def preview(client, tenant, rules):
    return client.post(
        PREVIEW, json.dumps({"tenant": tenant.pk, "rules": rules}), content_type="application/json"
    )


def list_statements(client) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        page = client.get("/admin/audiences/segment/")
    assert page.status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


def test_the_list_counts_no_segment_as_it_renders_however_many_there_are(tenant, viewer):
    make_device(tenant, "t1", user="ayse", language="tr")
    rules = {"version": 1, **TURKISH, "exclude": []}
    Segment.objects.create(tenant=tenant, name="Turkish", rules=rules)
    one = list_statements(viewer)
    for i in range(5):
        Segment.objects.create(tenant=tenant, name=f"Turkish {i}", rules=rules)

    five = list_statements(viewer)

    people = (AppUser._meta.db_table, Device._meta.db_table)
    assert not [sql for sql in one + five if any(table in sql for table in people)], "nobody counted"
    assert len(five) == len(one)
    page = viewer.get("/admin/audiences/segment/").content.decode()
    assert page.count('class="segment-size"') == 6 and "segment_sizes.js" in page


def test_each_row_of_the_list_asks_for_its_segments_size_now(tenant, viewer):
    make_device(tenant, "t1", user="ayse", language="tr")
    make_device(tenant, "t2", user="ayse", language="tr", platform="ios")
    make_device(tenant, "t3", user="john", language="en")
    segment = Segment.objects.create(
        tenant=tenant, name="Turkish", rules={"version": 1, **TURKISH, "exclude": []}
    )
    page = viewer.get("/admin/audiences/segment/").content.decode()
    url = f"{PREVIEW}?segment={segment.pk}"
    assert f'data-url="{url}"' in page

    assert viewer.get(url).json() == {"ok": True, "users": 1, "devices": 2}
    make_device(tenant, "t4", user="mehmet", language="tr")
    assert viewer.get(url).json() == {"ok": True, "users": 2, "devices": 3}, "counted now, not cached"


def test_a_segments_size_is_a_404_for_another_tenants_staff_or_no_such_segment(tenant, viewer, outsider):
    segment = Segment.objects.create(
        tenant=tenant, name="Turkish", rules={"version": 1, **TURKISH, "exclude": []}
    )

    assert outsider.get(f"{PREVIEW}?segment={segment.pk}").status_code == 404
    assert viewer.get(f"{PREVIEW}?segment={segment.pk + 1}").status_code == 404
    assert viewer.get(f"{PREVIEW}?segment=x").status_code == 404
    assert viewer.get(PREVIEW).status_code == 404


def test_viewers_read_segments_but_only_editors_write_them(tenant, viewer, editor):
    segment = Segment.objects.create(tenant=tenant, name="s")

    assert viewer.get("/admin/audiences/segment/add/").status_code == 403
    assert viewer.get(f"/admin/audiences/segment/{segment.pk}/change/").status_code == 200
    response = editor.post(
        "/admin/audiences/segment/add/",
        {"tenant": tenant.pk, "name": "Turkish", "description": "", "rules": json.dumps(TURKISH)},
    )
    assert response.status_code == 302
    saved = Segment.objects.get(name="Turkish")
    assert saved.rules["include"][0][0]["value"] == ["tr"] and saved.created_by.username == "eddie"


def test_the_editor_refuses_bad_rules_naming_the_path(tenant, editor):
    bad = {
        "include": [
            [{"type": "event", "event": "x", "op": "did", "params": [{"param": "a", "op": "~", "value": 1}]}]
        ]
    }

    response = editor.post(
        "/admin/audiences/segment/add/",
        {"tenant": tenant.pk, "name": "bad", "description": "", "rules": json.dumps(bad)},
    )

    assert response.status_code == 200
    assert "include[0][0].params[0].op: unknown operator &quot;~&quot;" in response.content.decode()
    assert not Segment.objects.exists()


def test_the_preview_answers_the_size_and_twenty_users_or_the_error_path(tenant, viewer):
    for i in range(25):
        make_device(tenant, f"t{i}", user=f"u{i}", language="tr")

    body = preview(viewer, tenant, TURKISH).json()
    assert (body["ok"], body["users"], body["devices"], len(body["sample"])) == (True, 25, 25, 20)

    error = preview(viewer, tenant, {"include": [[]]}).json()
    assert error == {
        "ok": False,
        "path": "include[0]",
        "error": error["error"],
        "text": "include[0]: an empty group: add a rule or remove the group",
    }


def test_the_preview_of_another_tenant_is_a_404(tenant, other_tenant, viewer):
    assert preview(viewer, other_tenant, TURKISH).status_code == 404
