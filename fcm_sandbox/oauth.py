"""The OAuth 2.0 JWT-bearer grant (RFC 7523) as Google's token endpoint runs it.

A client signs a JWT with its service-account key ({"alg": "RS256", "kid": key id};
claims iss = client_email, aud = token_uri, scope, iat, exp ≤ iat + 1 h) and posts
it as ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>``.
Failures use Google's error bodies: ``{"error": "invalid_grant", "error_description": …}``.
"""

import base64
import binascii
import functools
import json
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from fcm_sandbox.models import SandboxServiceAccount

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)
# What Google's token endpoint accepts as the JWT's aud, whatever URL it was posted to
# (google-auth always signs for the first); the sandbox also accepts its own URL.
GOOGLE_AUDIENCES = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    }
)
MAX_LIFETIME = 3600
CLOCK_SKEW = 300  # Google tolerates a few minutes of clock difference

SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
    "timeframe. Check your iat and exp values in the JWT claim."
)


class OAuthError(Exception):
    def __init__(self, error: str, description: str, *, status: int = 400):
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@functools.lru_cache(maxsize=256)
def _public_key(pem: str):
    return load_pem_public_key(pem.encode())


def verify_assertion(assertion: str, *, token_urls: set[str]) -> SandboxServiceAccount:
    """Check a signed JWT; return the service account it proves to be.

    ``token_urls`` are the URLs this endpoint answers to as the client saw them; the
    JWT's ``aud`` must be Google's token endpoint, one of them, or the account's token_uri.
    """
    try:
        head, claims, signature = assertion.split(".")
        header = json.loads(_b64decode(head))
        payload = json.loads(_b64decode(claims))
        signature_bytes = _b64decode(signature)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_grant", "Invalid JWT: the assertion is not a signed JWT.") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise OAuthError("invalid_grant", "Invalid JWT: the assertion is not a signed JWT.")
    if header.get("alg") != "RS256":
        raise OAuthError(
            "invalid_grant", f"Invalid JWT: unsupported signing algorithm {header.get('alg')!r}."
        )

    issuer = payload.get("iss")
    accounts = SandboxServiceAccount.objects.filter(client_email=issuer if isinstance(issuer, str) else "")
    if isinstance(header.get("kid"), str) and header["kid"]:
        accounts = accounts.filter(key_id=header["kid"])
    candidates = list(accounts)
    if not candidates:
        raise OAuthError("invalid_grant", "Invalid grant: account not found")
    signed = f"{head}.{claims}".encode()
    account = next((a for a in candidates if _verifies(a, signed, signature_bytes)), None)
    if account is None:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.")

    audience = payload.get("aud")
    allowed = {url.rstrip("/") for url in (*GOOGLE_AUDIENCES, *token_urls, account.token_uri)}
    if not isinstance(audience, str) or audience.rstrip("/") not in allowed:
        raise OAuthError(
            "invalid_grant", f"Invalid JWT: Failed audience check. The audience in the JWT is {audience!r}."
        )

    now = time.time()
    issued, expires = payload.get("iat"), payload.get("exp")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (issued, expires)):
        raise OAuthError("invalid_grant", SHORT_LIVED)
    if (
        issued > now + CLOCK_SKEW
        or expires < now - CLOCK_SKEW
        or expires - issued > MAX_LIFETIME
        or expires <= issued
    ):
        raise OAuthError("invalid_grant", SHORT_LIVED)

    scopes = set(str(payload.get("scope") or "").split())
    if not scopes & FCM_SCOPES:
        raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return account


def _verifies(account: SandboxServiceAccount, signed: bytes, signature: bytes) -> bool:
    try:
        _public_key(account.public_key_pem).verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
