"""The demo tenant's campaigns, as the demo command ships them (once per database)."""

from campaigns.models import Campaign
from campaigns.serializers import CampaignWriteSerializer, campaign_input
from fcm_sandbox.management.commands.demo import CART_CAMPAIGN, Command


def test_the_demo_campaigns_are_active_and_pass_the_apis_own_checks(tenant):
    Command().ship_campaigns(tenant=tenant, user=None)
    Command().ship_campaigns(tenant=tenant, user=None)  # a second demo run adds nothing

    campaigns = {c.name: c for c in Campaign.objects.filter(tenant=tenant)}
    assert len(campaigns) == 3 and {c.status for c in campaigns.values()} == {"active"}
    cart = campaigns[CART_CAMPAIGN]
    assert (cart.trigger_event, cart.cancel_event, cart.delay_seconds) == ("cart_add", "purchase", 120)
    for campaign in campaigns.values():
        checked = CampaignWriteSerializer(
            data=campaign_input(campaign), context={"default_language": tenant.default_language}
        )
        assert checked.is_valid(), (campaign.name, checked.errors)
