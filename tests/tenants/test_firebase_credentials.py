"""A tenant's Firebase service account: validation, encryption at rest, commands, admin."""

import io
import json

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection

from fcm_sandbox.accounts import generate_private_key_pem
from tenants import encryption
from tenants.credentials import (
    InvalidServiceAccount,
    application_default_service_account,
    parse_service_account,
    set_credentials,
)
from tenants.models import FirebaseCredential, Tenant


@pytest.fixture(scope="module")
def private_key() -> str:
    return generate_private_key_pem()


@pytest.fixture
def key_file(private_key) -> dict:
    """A service-account key file as the Firebase console hands it out."""
    return {
        "type": "service_account",
        "project_id": "acme-prod",
        "private_key_id": "4f1c0a1e2b3c4d5e6f708192a3b4c5d6e7f80912",
        "private_key": private_key,
        "client_email": "firebase-adminsdk-abcde@acme-prod.iam.gserviceaccount.com",
        "client_id": "109876543210987654321",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/firebase-adminsdk",
        "universe_domain": "googleapis.com",
    }


GOOGLE_SERVICES_JSON = {
    "project_info": {"project_number": "123456789012", "project_id": "acme-prod", "storage_bucket": "x"},
    "client": [
        {
            "client_info": {
                "mobilesdk_app_id": "1:123:android:abc",
                "android_client_info": {"package_name": "com.acme"},
            },
            "api_key": [{"current_key": "AIzaSyA-abcdefghijklmnopqrstuvwxyz12345"}],
        }
    ],
    "configuration_version": "1",
}
LEGACY_SERVER_KEY = "AAAAq1b2C3d:APA91bH" + "x" * 130


# --- Validation ---------------------------------------------------------------------------


def test_a_service_account_key_is_accepted_as_bytes_or_text(key_file):
    for raw in (
        json.dumps(key_file),
        json.dumps(key_file).encode(),
        b"\xef\xbb\xbf" + json.dumps(key_file).encode(),
    ):
        info = parse_service_account(raw)
        assert info["project_id"] == "acme-prod"
        assert info["client_email"].startswith("firebase-adminsdk-")
        assert info["private_key"] == key_file["private_key"]


def test_google_services_json_is_refused_with_directions():
    with pytest.raises(InvalidServiceAccount) as caught:
        parse_service_account(json.dumps(GOOGLE_SERVICES_JSON))

    assert caught.value.code == "google_services_json"
    assert "google-services.json" in str(caught.value)
    assert "Project settings > Service accounts" in str(caught.value)


@pytest.mark.parametrize(
    "raw", [LEGACY_SERVER_KEY, f"key={LEGACY_SERVER_KEY}", "AIzaSyA-abcdefghijklmnopqrstuvwxyz12345"]
)
def test_a_legacy_server_key_is_refused_with_the_reason(raw):
    with pytest.raises(InvalidServiceAccount) as caught:
        parse_service_account(raw)

    message = str(caught.value)
    assert caught.value.code == "legacy_server_key"
    assert "legacy" in message and "shut down" in message and "2024" in message
    assert "service-account key" in message


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        ("", "empty", "empty"),
        ("{not json", "not_json", "not valid JSON"),
        ("[1, 2]", "not_json", "not an object"),
        ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "not_json", "bare PEM key"),
        (
            '<?xml version="1.0"?><plist><dict><key>GOOGLE_APP_ID</key></dict></plist>',
            "not_json",
            "GoogleService-Info.plist",
        ),
        (
            '{"apiKey": "AIza", "appId": "1:2:web:3", "messagingSenderId": "2"}',
            "web_app_config",
            "web app config",
        ),
        (
            '{"type": "authorized_user", "client_id": "x", "refresh_token": "y"}',
            "wrong_type",
            "'authorized_user'",
        ),
        ("123456789012", "not_json", "sender ID"),
    ],
)
def test_other_files_are_refused_saying_what_they_are(raw, code, words):
    with pytest.raises(InvalidServiceAccount) as caught:
        parse_service_account(raw)

    assert caught.value.code == code
    assert words in str(caught.value)


def test_a_key_missing_fields_names_them(key_file):
    del key_file["client_email"]
    key_file["token_uri"] = ""

    with pytest.raises(InvalidServiceAccount, match="lacks client_email, token_uri"):
        parse_service_account(json.dumps(key_file))


def test_a_broken_private_key_is_refused(key_file):
    key_file["private_key"] = key_file["private_key"][:200] + "\n-----END PRIVATE KEY-----\n"

    with pytest.raises(InvalidServiceAccount) as caught:
        parse_service_account(json.dumps(key_file))

    assert caught.value.code == "invalid_private_key"


def test_a_private_key_that_is_not_rsa_is_refused(key_file):
    key_file["private_key"] = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )

    with pytest.raises(InvalidServiceAccount, match="not an RSA key"):
        parse_service_account(json.dumps(key_file))


def test_a_token_uri_must_be_an_http_url(key_file):
    key_file["token_uri"] = "oauth2.googleapis.com/token"

    with pytest.raises(InvalidServiceAccount, match="token_uri"):
        parse_service_account(json.dumps(key_file))


def test_a_huge_file_is_refused_unread():
    with pytest.raises(InvalidServiceAccount) as caught:
        parse_service_account(b"{" + b" " * 70_000 + b"}")

    assert caught.value.code == "too_large"


# --- Storing, encrypted --------------------------------------------------------------------


def test_set_credentials_stores_the_key_encrypted_at_rest(tenant, key_file):
    credential = set_credentials(tenant=tenant, raw=json.dumps(key_file))

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {FirebaseCredential._meta.db_table} WHERE id = %s", [credential.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    key_body = key_file["private_key"].splitlines()[5]
    assert "PRIVATE KEY" not in row
    assert key_body not in row
    assert credential.encrypted_private_key.startswith("gAAAA")  # a Fernet token
    assert (credential.project_id, credential.private_key_id) == ("acme-prod", key_file["private_key_id"])
    assert credential.token_uri == "https://oauth2.googleapis.com/token"


def test_the_stored_key_decrypts_to_what_was_uploaded(tenant, key_file):
    set_credentials(tenant=tenant, raw=json.dumps(key_file))

    info = FirebaseCredential.objects.get(tenant=tenant).service_account_info()

    assert info["private_key"] == key_file["private_key"]
    assert {k: info[k] for k in ("type", "project_id", "client_email", "token_uri", "private_key_id")} == {
        k: key_file[k] for k in ("type", "project_id", "client_email", "token_uri", "private_key_id")
    }


def test_a_new_key_replaces_the_old_one_and_its_last_check(tenant, key_file):
    first = set_credentials(tenant=tenant, raw=json.dumps(key_file))
    first.record_check(ok=False, message="broken")
    key_file["private_key_id"] = "new-key"

    second = set_credentials(tenant=tenant, raw=json.dumps(key_file))

    assert second.pk == first.pk
    assert FirebaseCredential.objects.count() == 1
    second.refresh_from_db()
    assert second.private_key_id == "new-key"
    assert (second.last_checked_at, second.last_check_ok, second.last_check_message) == (None, None, "")


def test_set_credentials_refuses_an_invalid_file_and_keeps_the_old_key(tenant, key_file):
    set_credentials(tenant=tenant, raw=json.dumps(key_file))

    with pytest.raises(InvalidServiceAccount):
        set_credentials(tenant=tenant, raw=json.dumps(GOOGLE_SERVICES_JSON))

    assert FirebaseCredential.objects.get(tenant=tenant).project_id == "acme-prod"


def test_one_tenant_cannot_read_anothers_credential(tenant, key_file):
    other = Tenant.objects.create(name="Other", tenant_id="other")
    set_credentials(tenant=tenant, raw=json.dumps(key_file))

    assert not hasattr_credential(other)


def hasattr_credential(tenant) -> bool:
    try:
        tenant.firebase_credential  # noqa: B018
    except FirebaseCredential.DoesNotExist:
        return False
    return True


# --- Encryption keys -----------------------------------------------------------------------


def test_without_configured_keys_the_key_is_derived_from_secret_key(settings):
    settings.HERALD_ENCRYPTION_KEYS = []
    token = encryption.encrypt("secret")

    assert Fernet(encryption.derive_key(settings.SECRET_KEY)).decrypt(token.encode()) == b"secret"
    settings.SECRET_KEY = "a-different-secret-key"
    with pytest.raises(encryption.InvalidToken):
        encryption.decrypt(token)


def test_secret_key_fallbacks_still_decrypt(settings):
    settings.HERALD_ENCRYPTION_KEYS = []
    token = encryption.encrypt("secret")

    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key"

    assert encryption.decrypt(token) == "secret"


def test_the_first_configured_key_encrypts_and_every_key_decrypts(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.HERALD_ENCRYPTION_KEYS = [old]
    token = encryption.encrypt("secret")

    settings.HERALD_ENCRYPTION_KEYS = [new, old]

    assert encryption.decrypt(token) == "secret"
    assert Fernet(new.encode()).decrypt(encryption.encrypt("x").encode()) == b"x"
    assert Fernet(old.encode()).decrypt(token.encode()) == b"secret"


def test_rotating_keys_reencrypts_every_credential(tenant, key_file, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.HERALD_ENCRYPTION_KEYS = [old]
    set_credentials(tenant=tenant, raw=json.dumps(key_file))
    settings.HERALD_ENCRYPTION_KEYS = [new, old]

    out = io.StringIO()
    call_command("reencrypt_fcm_credentials", stdout=out)

    assert "Re-encrypted 1" in out.getvalue()
    settings.HERALD_ENCRYPTION_KEYS = [new]
    settings.SECRET_KEY = "not-the-one-it-was-derived-from"
    assert FirebaseCredential.objects.get().service_account_info()["private_key"] == key_file["private_key"]


def test_moving_from_the_derived_key_to_a_configured_one_keeps_credentials_readable(
    tenant, key_file, settings
):
    settings.HERALD_ENCRYPTION_KEYS = []
    set_credentials(tenant=tenant, raw=json.dumps(key_file))

    settings.HERALD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    assert FirebaseCredential.objects.get().service_account_info()["private_key"] == key_file["private_key"]


def test_a_malformed_configured_key_is_a_clear_configuration_error(settings):
    settings.HERALD_ENCRYPTION_KEYS = ["not-a-fernet-key"]

    with pytest.raises(ImproperlyConfigured, match=r"HERALD_ENCRYPTION_KEYS\[0\]"):
        encryption.encrypt("secret")


# --- Application Default Credentials -----------------------------------------------------------


def test_adc_is_none_when_the_variable_is_unset(monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)

    assert application_default_service_account() is None


def test_adc_reads_the_file_the_variable_names(monkeypatch, tmp_path, key_file):
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key_file))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    assert application_default_service_account()["project_id"] == "acme-prod"


def test_a_bad_adc_file_is_named_in_the_error(monkeypatch, tmp_path):
    path = tmp_path / "google-services.json"
    path.write_text(json.dumps(GOOGLE_SERVICES_JSON))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    with pytest.raises(InvalidServiceAccount, match=f"GOOGLE_APPLICATION_CREDENTIALS={path}"):
        application_default_service_account()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(InvalidServiceAccount, match="cannot be read"):
        application_default_service_account()


# --- Commands --------------------------------------------------------------------------------


def test_set_fcm_credentials_stores_a_key_file(tenant, key_file, tmp_path):
    path = tmp_path / "acme-prod-firebase-adminsdk.json"
    path.write_text(json.dumps(key_file))
    out = io.StringIO()

    call_command("set_fcm_credentials", "acme", str(path), stdout=out)

    assert FirebaseCredential.objects.get(tenant=tenant).project_id == "acme-prod"
    assert "check_fcm_credentials acme" in out.getvalue()
    assert "PRIVATE KEY" not in out.getvalue()


def test_set_fcm_credentials_explains_a_wrong_file(tenant, tmp_path):
    path = tmp_path / "google-services.json"
    path.write_text(json.dumps(GOOGLE_SERVICES_JSON))

    with pytest.raises(CommandError, match="google-services.json"):
        call_command("set_fcm_credentials", "acme", str(path))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("set_fcm_credentials", "acme", str(tmp_path / "nope.json"))
    with pytest.raises(CommandError, match="No tenant"):
        call_command("set_fcm_credentials", "nobody", str(path))
    assert not FirebaseCredential.objects.exists()


# --- Admin --------------------------------------------------------------------------------------


def upload(data: dict | str, name="service-account.json") -> SimpleUploadedFile:
    raw = data if isinstance(data, str) else json.dumps(data)
    return SimpleUploadedFile(name, raw.encode(), content_type="application/json")


def test_the_admin_stores_an_uploaded_key_and_never_shows_it_again(admin_client, tenant, key_file):
    response = admin_client.post(
        "/admin/tenants/firebasecredential/add/",
        {"tenant": tenant.pk, "service_account_file": upload(key_file)},
        follow=True,
    )

    assert response.status_code == 200
    credential = FirebaseCredential.objects.get(tenant=tenant)
    assert credential.uploaded_by.username == "admin"
    key_body = key_file["private_key"].splitlines()[5]
    for url in (
        "/admin/tenants/firebasecredential/",
        f"/admin/tenants/firebasecredential/{credential.pk}/change/",
    ):
        page = admin_client.get(url).content.decode()
        assert "acme-prod" in page
        assert "PRIVATE KEY" not in page and key_body not in page
        assert credential.encrypted_private_key not in page
    change_page = admin_client.get(
        f"/admin/tenants/firebasecredential/{credential.pk}/change/"
    ).content.decode()
    assert key_file["client_email"] in change_page and key_file["private_key_id"] in change_page


def test_the_admin_explains_a_wrong_upload(admin_client, tenant):
    response = admin_client.post(
        "/admin/tenants/firebasecredential/add/",
        {"tenant": tenant.pk, "service_account_file": upload(GOOGLE_SERVICES_JSON, "google-services.json")},
    )

    assert response.status_code == 200
    assert "google-services.json, the Android app" in response.content.decode()
    assert not FirebaseCredential.objects.exists()


def test_the_admin_replaces_a_key_with_a_new_upload(admin_client, tenant, key_file):
    credential = set_credentials(tenant=tenant, raw=json.dumps(key_file))
    key_file["private_key_id"] = "rotated-key"

    admin_client.post(
        f"/admin/tenants/firebasecredential/{credential.pk}/change/",
        {"service_account_file": upload(key_file)},
    )
    credential.refresh_from_db()
    assert credential.private_key_id == "rotated-key"

    # Saving without a file changes nothing.
    admin_client.post(f"/admin/tenants/firebasecredential/{credential.pk}/change/", {})
    credential.refresh_from_db()
    assert credential.private_key_id == "rotated-key"
