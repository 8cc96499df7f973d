"""The campaign editor's form: the admin's fields, checked by the API's own serializer.

The form turns what staff typed into the body of POST /api/v1/campaigns and runs
CampaignWriteSerializer on it, so the admin and the API refuse exactly the same campaigns;
the first fault's path (content.variants[1].localizations.tr.title) is shown beside the field
that holds it. Content is written with the composer's variant tabs and language bar
(herald/content.js): variant A in the default language is the title/body fields, the rest
travel in the hidden content_doc field.
"""

import json

from django import forms
from django.urls import reverse

from api.errors import ApiError
from audiences.models import Segment
from campaigns.models import (
    AudienceKind,
    Campaign,
    ContentMode,
    Cooldown,
    Kind,
    QuietHoursAction,
    ScheduleKind,
    ZoneMode,
)
from campaigns.serializers import CampaignWriteSerializer, first_error
from tenants.codes import time_zones
from tenants.scoping import Role, tenants_for

WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]
DELAY_UNITS = [("1", "seconds"), ("60", "minutes"), ("3600", "hours"), ("86400", "days")]
# The push options a campaign made through the API may carry; the editor keeps them as they are.
CARRIED = ("data", "priority", "data_only", "options", "ttl_seconds")
# Where each top-level API field is shown in the form.
FIELD_OF = {
    "delay_seconds": "delay_value",
    "trigger_params": "trigger_params",
    "ab_test": "content_mode",
    "audience": "audience",
}
CONTENT_FIELDS = ("title", "body", "image_url", "click_link")


def no_rules() -> dict:
    return {"version": 1, "include": [], "exclude": []}


class CampaignForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=200)
    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(choices=Kind.choices, widget=forms.RadioSelect, initial=Kind.TRIGGERED)

    trigger_event = forms.CharField(
        max_length=200,
        required=False,
        label="Event",
        help_text="The event name your app records, e.g. cart_add.",
    )
    trigger_params = forms.CharField(
        required=False,
        label="Parameter filters",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "class": "hd-mono"}),
        help_text='Optional, as in segment rules: [{"param": "value", "op": ">", "value": 20}].',
    )
    delay_value = forms.IntegerField(min_value=0, required=False, initial=0, label="Delay")
    delay_unit = forms.ChoiceField(choices=DELAY_UNITS, initial="60", label="Delay unit")
    cancel_event = forms.CharField(
        max_length=200,
        required=False,
        label="Cancel event",
        help_text="Optional: drop the send if this event happens within the delay (e.g. purchase).",
    )

    schedule_kind = forms.ChoiceField(
        choices=[("", "Choose…"), *ScheduleKind.choices], required=False, label="Repeats"
    )
    send_time = forms.TimeField(required=False, label="At", widget=forms.TimeInput(attrs={"type": "time"}))
    send_date = forms.DateField(required=False, label="Date", widget=forms.DateInput(attrs={"type": "date"}))
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS, coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="On"
    )
    month_days = forms.CharField(
        required=False,
        label="Days of the month",
        help_text="e.g. 1, 15 (the 31st falls on a shorter month's last day).",
    )
    zone_mode = forms.ChoiceField(
        choices=ZoneMode.choices, widget=forms.RadioSelect, initial=ZoneMode.LOCAL, label="Time zone"
    )
    zone = forms.ChoiceField(choices=(), required=False, label="Zone")

    audience = forms.ChoiceField(
        choices=AudienceKind.choices, widget=forms.RadioSelect, initial=AudienceKind.ALL
    )
    segment = forms.ModelChoiceField(queryset=None, required=False)
    rules = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 6, "class": "vLargeTextField rules-json", "spellcheck": "false"}
        ),
    )

    title = forms.CharField(max_length=200, required=False)
    body = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3}))
    image_url = forms.CharField(max_length=1000, required=False, label="Image URL")
    click_link = forms.CharField(max_length=1000, required=False, label="Link")
    content_doc = forms.CharField(required=False, widget=forms.HiddenInput)
    content_mode = forms.ChoiceField(
        choices=ContentMode.choices, initial=ContentMode.ROTATE, label="Variants"
    )

    cooldown = forms.ChoiceField(
        choices=Cooldown.choices, initial=Cooldown.DAY, help_text="How soon a user may get it again."
    )
    quiet_hours_action = forms.ChoiceField(
        choices=QuietHoursAction.choices, initial=QuietHoursAction.DEFER, label="In quiet hours"
    )

    def __init__(self, *args, user, campaign: Campaign | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.campaign = campaign
        tenants = tenants_for(user, Role.EDITOR)
        if campaign is not None:
            tenants = tenants.filter(pk=campaign.tenant_id)
        self.fields["tenant"].queryset = tenants
        if tenants.count() == 1:
            self.fields["tenant"].widget = forms.HiddenInput()
            self.fields["tenant"].initial = tenants.get().pk
        self.fields["segment"].queryset = Segment.objects.filter(tenant__in=tenants).order_by("name")
        self.fields["zone"].choices = [("", "The tenant's zone"), *((z, z) for z in sorted(time_zones()))]
        self.fields["rules"].initial = json.dumps(no_rules())
        self.fields["rules"].widget.attrs["data-preview-url"] = reverse("admin:audiences_segment_preview")
        self.model_fields: dict | None = None

    # --- From a campaign -------------------------------------------------------------------

    @staticmethod
    def initial_from(campaign: Campaign) -> dict:
        content = campaign.content or {}
        variants = content.get("variants") or [{}]
        first = variants[0]
        delay, unit = campaign.delay_seconds, "1"
        for size in ("86400", "3600", "60"):
            if delay and delay % int(size) == 0:
                delay, unit = delay // int(size), size
                break
        doc = {
            "localizations": first.get("localizations") or {},
            "variants": variants[1:],
            "variant_mode": "split",
        }
        return {
            "tenant": campaign.tenant_id,
            "name": campaign.name,
            "description": campaign.description,
            "kind": campaign.kind,
            "trigger_event": campaign.trigger_event,
            "trigger_params": json.dumps(campaign.trigger_params) if campaign.trigger_params else "",
            "delay_value": delay,
            "delay_unit": unit,
            "cancel_event": campaign.cancel_event,
            "schedule_kind": campaign.schedule_kind,
            "send_time": campaign.send_time,
            "send_date": campaign.send_date,
            "weekdays": campaign.weekdays,
            "month_days": ", ".join(str(d) for d in campaign.month_days or []),
            "zone_mode": campaign.zone_mode,
            "zone": campaign.zone,
            "audience": campaign.audience,
            "segment": campaign.segment_id,
            "rules": json.dumps(campaign.rules or no_rules()),
            **{name: first.get(name, "") for name in CONTENT_FIELDS},
            "content_doc": json.dumps(doc),
            "content_mode": campaign.content_mode,
            "cooldown": campaign.cooldown,
            "quiet_hours_action": campaign.quiet_hours_action,
        }

    # --- Checking --------------------------------------------------------------------------

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        body = self.api_body(cleaned)
        if body is None:
            return cleaned
        tenant = cleaned["tenant"]
        serializer = CampaignWriteSerializer(data=body, context={"default_language": tenant.default_language})
        try:
            valid = serializer.is_valid()
        except ApiError as exc:  # rule and param faults name their own path
            path = exc.field or ""
            self._add_api_error(path, str(exc.detail).removeprefix(f"{path}: "))
            return cleaned
        if not valid:
            path, text, _ = first_error(serializer.errors)
            self._add_api_error(path, text)
            return cleaned
        segment = cleaned.get("segment")
        if body["audience"]["kind"] == AudienceKind.SEGMENT and (
            segment is None or segment.tenant_id != tenant.pk
        ):
            self.add_error("segment", "Choose a segment of this tenant.")
            return cleaned
        fields = serializer.model_fields(language=tenant.default_language)
        fields.pop("segment_id")
        fields["segment"] = segment if fields["audience"] == AudienceKind.SEGMENT else None
        self.model_fields = fields
        return cleaned

    def _add_api_error(self, path: str, text: str) -> None:
        top = path.split(".")[0].split("[")[0]
        if top == "content":
            name = "content_doc"
            for field in CONTENT_FIELDS:
                if path == f"content.variants[0].{field}":
                    name = field
            message = text if name != "content_doc" else f"{path.removeprefix('content.')}: {text}"
        elif top == "audience":
            name = "rules" if ".rules" in path else ("segment" if "segment" in path else "audience")
            message = text if name != "rules" else f"{path}: {text}"
        else:
            name = FIELD_OF.get(top, top if top in self.fields else None)
            message = f"{path}: {text}" if name == "trigger_params" else text
        self.add_error(name, message)

    def api_body(self, c) -> dict | None:
        """What the form says, as the body of POST /api/v1/campaigns (None if unreadable)."""
        variants = [{k: c[k] for k in CONTENT_FIELDS if c.get(k) or k in ("title", "body")}]
        doc = {}
        if c.get("content_doc"):
            try:
                doc = json.loads(c["content_doc"])
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                self.add_error(
                    "content_doc", "The languages and variants could not be read; reload the page."
                )
                return None
        if doc.get("localizations"):
            variants[0]["localizations"] = doc["localizations"]
        for other in doc.get("variants") or []:
            if isinstance(other, dict):
                variants.append({k: v for k, v in other.items() if v or k in ("title", "body")})
        content = {"variants": variants}
        stored = (self.campaign.content or {}) if self.campaign else {}
        content.update({k: stored[k] for k in CARRIED if k in stored})
        body = {
            "name": c["name"],
            "description": c.get("description", ""),
            "kind": c["kind"],
            "content": content,
            "content_mode": c["content_mode"],
            "cooldown": c["cooldown"],
            "quiet_hours_action": c["quiet_hours_action"],
        }
        if c["content_mode"] == ContentMode.AB_TEST:
            previous = (self.campaign.ab_test if self.campaign else None) or {}
            body["ab_test"] = {k: v for k, v in previous.items() if k in AB_TEST_KEYS}
        audience = {"kind": c["audience"]}
        if c["audience"] == AudienceKind.SEGMENT:
            if c.get("segment") is None:
                self.add_error("segment", "Choose a segment.")
                return None
            audience["segment_id"] = c["segment"].pk
        elif c["audience"] == AudienceKind.RULES:
            try:
                audience["rules"] = json.loads(c.get("rules") or "{}")
            except ValueError:
                self.add_error("rules", "The rules are not valid JSON.")
                return None
        body["audience"] = audience
        if c["kind"] == Kind.TRIGGERED:
            body["trigger_event"] = c.get("trigger_event", "")
            if c.get("trigger_params", "").strip():
                try:
                    body["trigger_params"] = json.loads(c["trigger_params"])
                except ValueError:
                    self.add_error(
                        "trigger_params", 'Not JSON; write e.g. [{"param": "value", "op": ">", "value": 20}].'
                    )
                    return None
            body["delay_seconds"] = (c.get("delay_value") or 0) * int(c.get("delay_unit") or 1)
            body["cancel_event"] = c.get("cancel_event", "")
        else:
            kind = c.get("schedule_kind", "")
            body["schedule_kind"] = kind
            body["zone_mode"] = c["zone_mode"]
            if c.get("send_time") is not None:
                body["send_time"] = c["send_time"].strftime("%H:%M")
            if kind in (ScheduleKind.ONCE, ScheduleKind.ANNUALLY) and c.get("send_date"):
                body["send_date"] = c["send_date"].isoformat()
            if kind == ScheduleKind.WEEKLY:
                body["weekdays"] = list(c.get("weekdays") or [])
            if kind == ScheduleKind.MONTHLY:
                try:
                    body["month_days"] = [int(d) for d in c.get("month_days", "").replace(",", " ").split()]
                except ValueError:
                    self.add_error("month_days", "Days of the month as numbers, e.g. 1, 15.")
                    return None
            if c["zone_mode"] == ZoneMode.GLOBAL and c.get("zone"):
                body["zone"] = c["zone"]
        return body

    def sketch(self) -> Campaign:
        """An unsaved campaign from whatever parsed, for the live summary (never saved)."""
        c = getattr(self, "cleaned_data", {}) or {}
        campaign = Campaign(
            kind=c.get("kind") or Kind.TRIGGERED,
            trigger_event=c.get("trigger_event") or "",
            delay_seconds=(c.get("delay_value") or 0) * int(c.get("delay_unit") or 1),
            cancel_event=c.get("cancel_event") or "",
            schedule_kind=c.get("schedule_kind") or "",
            send_time=c.get("send_time"),
            send_date=c.get("send_date"),
            weekdays=list(c.get("weekdays") or []),
            zone_mode=c.get("zone_mode") or ZoneMode.LOCAL,
            zone=c.get("zone") or "",
        )
        try:
            campaign.month_days = [int(d) for d in (c.get("month_days") or "").replace(",", " ").split()]
        except ValueError:
            campaign.month_days = []
        try:
            campaign.trigger_params = json.loads(c.get("trigger_params") or "[]")
        except ValueError:
            campaign.trigger_params = []
        if c.get("tenant") is not None:
            campaign.tenant = c["tenant"]
        return campaign


AB_TEST_KEYS = ("test_percent", "wait_seconds", "metric", "min_opens", "fallback_variant")
