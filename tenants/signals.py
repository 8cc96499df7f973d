"""What tenants tell the rooms above them, which they may not import."""

from django.dispatch import Signal

# A tenant was deactivated (tenant=, reason=): its pushes must stop. messaging cancels its
# scheduled and sending messages; campaigns, once they exist, stop theirs the same way.
tenant_deactivated = Signal()
