"""What the campaigns app tells whoever plans its work (the scheduler, the admin's caches).

`campaign_changed` is sent after the transaction that created, edited, activated, paused,
resumed or archived a campaign commits. Arguments: campaign, what ("created", "updated",
"activated", "paused", "resumed", "archived").
"""

from django.dispatch import Signal

campaign_changed = Signal()
