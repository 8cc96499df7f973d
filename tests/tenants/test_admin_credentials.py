"""Firebase credentials in the admin: tenant admins upload, check and replace them; every
member sees project, client email, key ID and the last check; nobody sees the private key."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from fcm_sandbox.accounts import create_service_account
from tenants.credentials import set_credentials
from tenants.models import FirebaseCredential

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.staff_fixtures"]  # viewer, editor, tenant_admin, superuser, other_tenant


@pytest.fixture
def service_account(sandbox_private_key):
    return create_service_account(
        project_id="acme-push",
        token_uri="https://oauth2.googleapis.com/token",
        client_email="herald@acme-push.iam.gserviceaccount.com",
        private_key_pem=sandbox_private_key,
    )


def upload(client, tenant, account, url="/admin/tenants/firebasecredential/add/"):
    file = SimpleUploadedFile("acme-push.json", json.dumps(account).encode(), "application/json")
    return client.post(url, {"tenant": tenant.pk, "service_account_file": file})


def private_key_parts(account) -> list[str]:
    lines = account["private_key"].strip().splitlines()
    return [lines[1], lines[len(lines) // 2], lines[-2]]


def test_a_tenant_admin_uploads_a_service_account(tenant_admin, tenant, service_account):
    response = upload(tenant_admin, tenant, service_account)

    assert response.status_code == 302
    credential = FirebaseCredential.objects.get(tenant=tenant)
    assert credential.project_id == "acme-push"


def test_the_credential_page_shows_project_email_and_key_id_never_the_private_key(
    viewer, tenant, service_account
):
    credential = set_credentials(tenant=tenant, raw=json.dumps(service_account))

    page = viewer.get(f"/admin/tenants/firebasecredential/{credential.pk}/change/").content.decode()
    listing = viewer.get("/admin/tenants/firebasecredential/").content.decode()

    for text in (
        "acme-push",
        "herald@acme-push.iam.gserviceaccount.com",
        service_account["private_key_id"],
        "not checked yet",
    ):
        assert text in page
    for part in private_key_parts(service_account):
        assert part not in page and part not in listing
    assert credential.encrypted_private_key not in page


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_a_tenant_admin_uploads_credentials(request, role, tenant, service_account):
    client = request.getfixturevalue(role)

    assert upload(client, tenant, service_account).status_code == 403
    assert not FirebaseCredential.objects.exists()


def test_a_tenant_admin_cannot_upload_for_another_tenant(tenant_admin, other_tenant, service_account):
    response = upload(tenant_admin, other_tenant, service_account)

    assert b"Select a valid choice" in response.content
    assert not FirebaseCredential.objects.exists()


def test_another_tenants_credential_is_a_404(tenant_admin, other_tenant, service_account):
    credential = set_credentials(tenant=other_tenant, raw=json.dumps(service_account))

    assert tenant_admin.get(f"/admin/tenants/firebasecredential/{credential.pk}/change/").status_code == 404


def test_a_tenant_admin_replaces_the_key(tenant_admin, tenant, service_account):
    credential = set_credentials(tenant=tenant, raw=json.dumps(service_account))
    replacement = {
        **service_account,
        "private_key_id": "f" * 40,
        "client_email": "new@acme-push.iam.gserviceaccount.com",
    }

    upload(
        tenant_admin, tenant, replacement, url=f"/admin/tenants/firebasecredential/{credential.pk}/change/"
    )

    credential.refresh_from_db()
    assert (credential.private_key_id, credential.client_email) == ("f" * 40, replacement["client_email"])


def test_a_wrong_file_is_refused_in_plain_words(tenant_admin, tenant):
    google_services = {"project_info": {"project_id": "acme"}, "client": []}

    response = upload(tenant_admin, tenant, google_services)

    assert b"google-services.json" in response.content
    assert not FirebaseCredential.objects.exists()


def test_check_now_on_the_credential_page_records_the_result(tenant_admin, tenant, sandbox_credential):
    url = f"/admin/tenants/firebasecredential/{sandbox_credential.pk}/change/"
    assert b'id="hd-check-credential"' in tenant_admin.get(url).content

    response = tenant_admin.post(
        url, {"CHANGE_FORM-action": "check_selected", "_selected_action": sandbox_credential.pk}, follow=True
    )

    sandbox_credential.refresh_from_db()
    assert sandbox_credential.last_check_ok is True
    assert b"Works: got an access token" in response.content
    assert b">works<" in response.content


def test_upload_and_replace_without_a_file_says_to_choose_one(tenant_admin, tenant, service_account):
    credential = set_credentials(tenant=tenant, raw=json.dumps(service_account))
    url = f"/admin/tenants/firebasecredential/{credential.pk}/change/"

    response = tenant_admin.post(url, {"_save": "Upload and replace"})

    assert response.status_code == 200
    assert "Choose the new service-account JSON file to upload first." in response.content.decode()
    credential.refresh_from_db()
    assert credential.private_key_id == service_account["private_key_id"]
