"""Encryption at rest for the few secrets Herald must be able to read back.

Service-account private keys cannot be hashed like API keys: Herald signs with them.
They are encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

Keys, first match wins:

* ``HERALD_ENCRYPTION_KEYS`` (comma-separated Fernet keys). The first key encrypts;
  every key decrypts, so a key rotates by putting a new one in front, running
  ``manage.py reencrypt_fcm_credentials``, and then dropping the old one.
* With that setting empty, a key derived from ``SECRET_KEY`` with HKDF-SHA256 (and
  one from each of ``SECRET_KEY_FALLBACKS``, for decryption only, so that Django's
  own way of rotating ``SECRET_KEY`` keeps stored credentials readable).

The keys derived from ``SECRET_KEY`` are always accepted for decryption, even after
``HERALD_ENCRYPTION_KEYS`` is set: that is what lets an install move from the derived
key to a dedicated one without knowing the derived key's value. Re-encrypt afterwards,
and a leaked ``SECRET_KEY`` no longer exposes any stored credential.

Generate a key with ``python -c "from cryptography.fernet import Fernet;
print(Fernet.generate_key().decode())"``.
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "reencrypt"]

# Changing these would make every stored credential unreadable.
_HKDF_SALT = b"herald"
_HKDF_INFO = b"herald/tenants/firebase-credential/fernet/v1"


def derive_key(secret: str) -> bytes:
    """The Fernet key Herald derives from a Django SECRET_KEY."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


def _fernet() -> MultiFernet:
    return _build_fernet(
        tuple(settings.HERALD_ENCRYPTION_KEYS),
        settings.SECRET_KEY,
        tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())),
    )


@functools.lru_cache(maxsize=8)  # keyed on the settings, so tests that override them still work
def _build_fernet(configured: tuple, secret: str, fallbacks: tuple) -> MultiFernet:
    keys = []
    for position, key in enumerate(k for k in configured if k):
        try:
            keys.append(Fernet(key))
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"HERALD_ENCRYPTION_KEYS[{position}] is not a Fernet key (32 url-safe "
                "base64-encoded bytes). Generate one with Fernet.generate_key()."
            ) from None
    keys.extend(Fernet(derive_key(s)) for s in (secret, *fallbacks) if s)
    return MultiFernet(keys)


def encrypt(plaintext: str) -> str:
    """Encrypt with the current key; the result is ASCII, safe for a text column."""
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(ciphertext: str) -> str:
    """Decrypt with any configured key. Raises InvalidToken if none fits."""
    return _fernet().decrypt(ciphertext.encode("ascii")).decode()


def reencrypt(ciphertext: str) -> str:
    """The same plaintext, encrypted with the current (first) key."""
    return _fernet().rotate(ciphertext.encode("ascii")).decode("ascii")
