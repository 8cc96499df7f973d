"""Herald's FCM sandbox: Google's OAuth token endpoint and FCM HTTP v1 ``messages:send``.

It speaks the real protocol, so Herald's client (and google-auth, and firebase-admin)
use it unchanged when a service account's ``token_uri`` and ``FCM_API_URL`` point at it:

* ``POST /token``: the OAuth 2.0 JWT-bearer grant. Checks the RS256 signature against
  the public keys of service accounts the sandbox knows (``SandboxServiceAccount``),
  and ``iss``, ``aud``, ``scope``, ``iat``/``exp``; answers with a bearer token.
* ``POST /v1/projects/{project}/messages:send``: needs a bearer token the sandbox
  issued for that project; checks the body strictly against the discovery document
  (``schema.py``); answers with Google's success and error bodies; keeps what it
  accepted (``SandboxMessage``).
* ``GET /``: the "virtual device" inbox, rendered like phone notifications
  (``?token=`` filters); ``GET /inbox.json?token=…&after=<id>`` for programs.

Fault injection by registration token (or FID) prefix, after the message validates:

=============================== =========================================================
``sandbox-unregistered…``       404 UNREGISTERED
``sandbox-sender-mismatch…``    403 SENDER_ID_MISMATCH
``sandbox-invalid…``            400 INVALID_ARGUMENT (not a valid registration token)
``sandbox-quota[-<s>]…``        429 QUOTA_EXCEEDED with ``Retry-After: <s>`` (default 60)
``sandbox-unavailable-once…``   503 UNAVAILABLE the first time, then delivered
``sandbox-unavailable…``        503 UNAVAILABLE with ``Retry-After: 30``, always
``sandbox-internal…``           500 INTERNAL
``sandbox-third-party-auth…``   401 THIRD_PARTY_AUTH_ERROR
``sandbox-slow[-<ms>]…``        answers after <ms> milliseconds (default 3000), delivered
=============================== =========================================================

Globally (``manage.py fcm_sandbox`` options, or ``state.configure`` in tests): added
latency, a random failure rate, and the lifetime of issued tokens.
"""
