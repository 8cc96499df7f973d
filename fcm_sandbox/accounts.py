"""Service accounts for the sandbox: keys made here, trusted by the sandbox's token endpoint."""

import json
import re
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction

from fcm_sandbox.models import SandboxServiceAccount
from tenants.credentials import set_credentials
from tenants.models import FirebaseCredential, Tenant


def generate_private_key_pem() -> str:
    """A 2048-bit RSA key in PKCS#8 PEM, the kind Google puts in service-account files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def create_service_account(
    *,
    project_id: str,
    token_uri: str,
    client_email: str = "",
    private_key_pem: str = "",
) -> dict:
    """Make a service-account key the sandbox trusts; return the JSON Google would issue.

    The public key is registered with the sandbox (in the database, so a sandbox in
    another process trusts it too). Pass ``private_key_pem`` to reuse a key: making
    an RSA key takes a noticeable fraction of a second.
    """
    pem = private_key_pem or generate_private_key_pem()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    email = client_email or f"firebase-adminsdk-sandbox@{project_id}.iam.gserviceaccount.com"
    key_id = secrets.token_hex(20)
    SandboxServiceAccount.objects.create(
        client_email=email,
        key_id=key_id,
        project_id=project_id,
        public_key_pem=public_pem,
        token_uri=token_uri,
    )
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**21)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "",
        "universe_domain": "googleapis.com",
    }


def sandbox_project_id(tenant: Tenant) -> str:
    """A valid Firebase project ID for a tenant: 6–30 of a-z, 0-9 and '-', starting with a letter."""
    slug = re.sub(r"[^a-z0-9-]+", "-", tenant.tenant_id.lower()).strip("-") or "tenant"
    return f"sandbox-{slug}"[:30].rstrip("-")


def provision_tenant(
    *, tenant: Tenant, sandbox_url: str, project_id: str = "", private_key_pem: str = ""
) -> tuple[FirebaseCredential, dict]:
    """Give a tenant a credential whose token_uri is the sandbox's; return it and its JSON.

    Messages go to the sandbox only when FCM_API_URL points there too.
    """
    with transaction.atomic():
        info = create_service_account(
            project_id=project_id or sandbox_project_id(tenant),
            token_uri=f"{sandbox_url.rstrip('/')}/token",
            private_key_pem=private_key_pem,
        )
        credential = set_credentials(tenant=tenant, raw=json.dumps(info))
    return credential, info
