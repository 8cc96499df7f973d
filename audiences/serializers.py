from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.errors import ApiError
from api.fields import StrictCharField
from audiences import rules as rule_doc
from audiences.models import Segment

RULES_SCHEMA = {
    "type": "object",
    "description": "A rule document (README, Segments): "
    '{"version": 1, "include": [[rule, …], …], "exclude": [[rule, …], …]}.',
    "properties": {
        "version": {"type": "integer", "enum": [1]},
        "include": {"type": "array", "items": {"type": "array", "items": {"type": "object"}}},
        "exclude": {"type": "array", "items": {"type": "array", "items": {"type": "object"}}},
    },
    "additionalProperties": False,
    "example": {
        "include": [
            [
                {
                    "type": "event",
                    "event": "purchase",
                    "op": "did",
                    "within_days": 14,
                    "params": [{"param": "amount", "op": ">", "value": 50}],
                }
            ]
        ],
        "exclude": [],
    },
}


@extend_schema_field(RULES_SCHEMA)
class RulesField(serializers.Field):
    """A rule document, checked by audiences.rules; a fault is a 400 naming its path
    (`rules.include[0][1].params[0].op`) in `field`."""

    def __init__(self, *, path: str = "rules", **kwargs):
        self.path = path
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return rule_doc.parse(data)
        except rule_doc.RuleError as exc:
            field = f"{self.path}.{exc.path}" if exc.path else self.path
            raise ApiError(f"{field}: {exc.message}", code="invalid_rules", field=field) from None

    def to_representation(self, value):
        return value


class SegmentWriteSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    rules = RulesField()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class SegmentSerializer(serializers.ModelSerializer):
    rules = RulesField(read_only=True)

    class Meta:
        model = Segment
        fields = ["id", "name", "description", "rules", "created_at", "updated_at"]


class SizeSerializer(serializers.Serializer):
    users = serializers.IntegerField(help_text="App users the rules match now.")
    devices = serializers.IntegerField(help_text="Their devices that allow pushes (active, permitted).")


class AdHocCountSerializer(serializers.Serializer):
    rules = RulesField()

    def to_internal_value(self, data):
        if isinstance(data, dict) and set(data) - {"rules"}:
            raise serializers.ValidationError({sorted(set(data) - {"rules"})[0]: ["Unknown field."]})
        return super().to_internal_value(data)
