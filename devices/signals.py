"""What the devices app tells the apps above it (messaging, webhooks), which it never imports.

Each signal is sent inside the transaction that made the change, once per change (never
once per row of a bulk change), so a receiver may write rows that commit or roll back
with it.
"""

from collections.abc import Callable

from django.dispatch import Signal

# Devices stopped being targeted. Arguments: tenant_id (None when the devices may belong to
# several tenants), device_ids (None when the change was too broad to list: then every
# device with exactly this deactivated_at and reason is one of them), reason, at.
devices_deactivated = Signal()

# A device's token was swapped by POST /devices/refresh-token. Arguments: device, at.
token_rotated = Signal(use_caching=True)

# Whether some receiver of token_rotated may write rows for a tenant, asked before the swap: the
# refresh opens a transaction of its own (BEGIN and COMMIT, two more round trips) only when one
# may, so that what it writes commits with the rotation; otherwise the swap is one statement in
# autocommit. A receiver that writes for some tenants only says which with
# @writes_on_token_rotated_when(test), test(tenant_id) -> bool; a receiver without a test is
# taken to write for every tenant.
_rotation_writes: dict[Callable, Callable[[int], bool]] = {}


def writes_on_token_rotated_when(test: Callable[[int], bool]):
    """Declare of a token_rotated receiver for which tenants it writes rows (see above)."""

    def declare(receiver):
        _rotation_writes[receiver] = test
        return receiver

    return declare


def token_rotated_may_write(tenant_id: int) -> bool:
    """Whether a receiver of token_rotated may write rows for this tenant's next rotation."""
    if len(token_rotated.receivers) > len(_rotation_writes):
        return True  # a receiver that declared nothing
    return any(test(tenant_id) for test in _rotation_writes.values())


# Sent inside erase_app_user's transaction, before the user's rows are deleted, with
# tenant, app_user_id, device_ids and tokens (current and past). A receiver removes what
# it holds of the user and returns {"what it removed": count, …} for the erasure's answer.
app_user_erasing = Signal()

# An event was stored (sent after its transaction commits, from the request that recorded
# it). Arguments: tenant_id, name. Campaigns listen to queue their matching; receivers must
# stay cheap: /events waits for them.
event_recorded = Signal(use_caching=True)
