"""What the devices app tells the rooms above it."""

from django.dispatch import Signal

# Sent inside erase_app_user's transaction, before the user's rows are deleted, with
# tenant, app_user_id, device_ids and tokens (current and past). A receiver removes what
# it holds of the user and returns {"what it removed": count, …} for the erasure's answer.
app_user_erasing = Signal()
