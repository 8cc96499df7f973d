"""What the messaging app tells the apps above it (webhooks, metrics), which it never imports.

Each signal is sent inside the transaction that made the change, once per batch (never
once per delivery), so a receiver may write rows that commit or roll back with it.
"""

from django.dispatch import Signal

# A batch of send results was written. Arguments: message, sent (Delivery objects now
# sent, with .device loaded), failed (Delivery objects that failed for good), at.
deliveries_recorded = Signal()

# A push was reported opened for the first time. Arguments: tenant_id, delivery_id, at.
push_opened = Signal()

# A message finished sending (completed, completed with failures, or failed).
# Arguments: message_id, tenant_id, status, at.
message_completed = Signal()

# herald_beat made one pass: apps with periodic work of their own hook it here.
# Arguments: now.
beat = Signal()
