from rest_framework import serializers

from api.fields import StrictBooleanField, StrictCharField
from messaging.serializers import StrictSerializer
from webhooks.models import Attempt, Endpoint, EventType

EVENT_TYPES_HELP = "Event types to receive: " + ", ".join(EventType.values) + "."


class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(choices=EventType.values)

    def __init__(self, **kwargs):
        super().__init__(
            min_length=1, max_length=len(EventType.values) * 2, help_text=EVENT_TYPES_HELP, **kwargs
        )

    def to_internal_value(self, data):
        return sorted(set(super().to_internal_value(data)))


class EndpointCreateSerializer(StrictSerializer):
    url = StrictCharField(max_length=2000, help_text="An https URL of your back end.")
    event_types = EventTypesField()
    description = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class EndpointUpdateSerializer(StrictSerializer):
    url = StrictCharField(max_length=2000, required=False)
    event_types = EventTypesField(required=False)
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    enabled = StrictBooleanField(
        required=False,
        help_text="true enables a disabled endpoint again (its failures are forgotten and "
        "the events that waited are sent); false disables it.",
    )


class EndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    url = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.values), read_only=True
    )
    enabled = serializers.BooleanField(source="is_enabled", read_only=True)
    disabled_at = serializers.DateTimeField(read_only=True, allow_null=True)
    disabled_reason = serializers.CharField(
        read_only=True, help_text="Why Herald disabled the endpoint, if it did."
    )
    consecutive_failures = serializers.IntegerField(read_only=True)
    failing_since = serializers.DateTimeField(read_only=True, allow_null=True)
    retry_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="After failures, the next attempt is not before this."
    )
    last_success_at = serializers.DateTimeField(read_only=True, allow_null=True)
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="While a rotated-out secret still signs, until when."
    )
    created_at = serializers.DateTimeField(read_only=True)


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret (whsec_…), shown only now.")


class AttemptSerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(source="batch.webhook_id", read_only=True, allow_null=True)

    class Meta:
        model = Attempt
        fields = [
            "id",
            "attempted_at",
            "trigger",
            "webhook_id",
            "event_count",
            "ok",
            "status_code",
            "latency_ms",
            "error",
            "detail",
        ]
        read_only_fields = fields


def endpoint_with_secret(endpoint: Endpoint, secret: str) -> dict:
    return {**EndpointSerializer(endpoint).data, "secret": secret}
