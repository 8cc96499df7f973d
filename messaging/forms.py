"""The composer's form: what staff type, turned into a `services.MessageInput`.

The form reads what staff type (lists one a line, a local time in a zone, a TTL in
units, data as key and value pairs) into the body `POST /api/v1/messages` takes, and has
the API's serializer (`messaging.serializers.MessageCreateSerializer`) judge it: the
message rules are stated once, there. Only what belongs to the composer stays here: a
data value without a key or a key typed twice, and a schedule that has passed.
"""

import json
import re
import zoneinfo
from datetime import datetime, timedelta

from django import forms
from django.urls import reverse
from django.utils import timezone

from audiences import rules as rule_doc
from audiences.models import Segment, no_rules
from devices.models import MAX_TOKEN_LENGTH, Platform
from messaging import content
from messaging.models import Audience, Message, validate_link
from messaging.serializers import ComposedContentSerializer, MessageCreateSerializer
from messaging.services import MessageInput
from tenants.scoping import Role, tenants_for

TTL_UNITS = [("60", "minutes"), ("3600", "hours"), ("86400", "days"), ("604800", "weeks")]
MAX_DATA_PAIRS = 50
# The code of the segment field's error when the segment's stored rules cannot be used.
UNUSABLE_RULES = "unusable_rules"
# The API's field names where the form's differ.
FORM_FIELDS = {"ttl_seconds": "ttl_value", "kind": "audience", "segment_id": "segment"}


def _time_zones() -> list[tuple[str, str]]:
    zones = sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")
    return [(z, z.replace("_", " ")) for z in zones]


def _texts(problems) -> list[str]:
    """DRF's error details (lists, dicts by list index or field) as flat sentences."""
    if isinstance(problems, dict):
        return [t for value in problems.values() for t in _texts(value)]
    if isinstance(problems, list):
        return [t for value in problems for t in _texts(value)]
    return [str(problems)]


def split_list(text: str) -> list[str]:
    """Values typed one a line or separated by commas, stripped, blanks and repeats dropped."""
    seen = {}
    for value in re.split(r"[\n,]", text or ""):
        if value.strip():
            seen.setdefault(value.strip(), None)
    return list(seen)


class SegmentSelect(forms.Select):
    """Each segment's option names its tenant (data-tenant), so the page offers only the chosen tenant's."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if instance := getattr(value, "instance", None):
            option["attrs"]["data-tenant"] = str(instance.tenant_id)
        return option


def segment_label(segment: Segment) -> str:
    """A segment as the composer lists it: its name only. Counting every segment as the page
    renders took 0.3-0.5 s each at a million users; the picked one's size is the composer's
    audience estimate (composer.js asks the audience view once it is picked)."""
    return segment.name


class ComposeForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=None, empty_label=None)
    title = forms.CharField(
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "Your order is on its way", "autocomplete": "off"}),
    )
    body = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Arriving today between 2 and 4 pm."}),
    )
    image_url = forms.URLField(
        label="Image URL",
        required=False,
        max_length=1000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://…/picture.jpg"}),
    )
    click_link = forms.CharField(
        label="Link opened on click",
        required=False,
        max_length=1000,
        validators=[validate_link],
        widget=forms.URLInput(attrs={"placeholder": "https://… or myapp://…"}),
    )

    data_only = forms.TypedChoiceField(
        label="Kind",
        coerce=lambda v: v == "1",
        initial="1",
        widget=forms.RadioSelect,
        choices=[
            ("1", "Data-only: the app draws the notification"),
            ("0", "Notification: the phone or browser draws it"),
        ],
    )
    priority = forms.TypedChoiceField(
        coerce=int,
        initial=5,
        choices=[
            (i, f"{i} · {'high, delivered at once' if i >= 7 else 'normal, may wait for the device'}")
            for i in range(10, 0, -1)
        ],
    )
    android_channel = forms.CharField(label="Android channel", max_length=100, required=False)
    sound = forms.CharField(
        max_length=100, required=False, widget=forms.TextInput(attrs={"placeholder": "default"})
    )
    badge = forms.IntegerField(
        min_value=0, max_value=99999, required=False, help_text="The number on the app icon (iOS)."
    )
    collapse_key = forms.CharField(
        max_length=100,
        required=False,
        help_text="A newer push with the same key replaces an undelivered one.",
    )
    analytics_label = forms.CharField(max_length=50, required=False)

    audience = forms.ChoiceField(
        initial=Audience.ALL,
        widget=forms.RadioSelect,
        choices=[
            (Audience.ALL, "Everyone"),
            (Audience.FILTER, "Platform, country, language"),
            (Audience.USERS, "App users"),
            (Audience.TOKENS, "Device tokens"),
            (Audience.TOPIC, "FCM topic"),
            (Audience.CONDITION, "FCM condition"),
            (Audience.SEGMENT, "Segment"),
            (Audience.RULES, "Rules"),
        ],
    )
    segment = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="Choose a segment", widget=SegmentSelect
    )
    # The rule document, as JSON; audiences/rule_builder.js draws it and writes it back.
    rules = forms.CharField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 4, "class": "rules-json", "spellcheck": "false", "aria-label": "Rules as JSON"}
        ),
    )
    platforms = forms.MultipleChoiceField(
        choices=Platform.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    countries = forms.CharField(
        required=False,
        help_text="ISO codes, comma-separated: TR, DE",
        widget=forms.TextInput(attrs={"placeholder": "TR, DE"}),
    )
    languages = forms.CharField(
        required=False,
        help_text="ISO codes, comma-separated: tr, en",
        widget=forms.TextInput(attrs={"placeholder": "tr, en"}),
    )
    app_user_ids = forms.CharField(
        label="App user ids",
        required=False,
        help_text="One a line.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    tokens = forms.CharField(
        required=False,
        help_text="FCM registration tokens, one a line.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    topic = forms.CharField(
        required=False, max_length=900, widget=forms.TextInput(attrs={"placeholder": "news"})
    )
    condition = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"placeholder": "'news' in topics && 'tr' in topics"}),
    )

    when = forms.ChoiceField(
        initial="now", widget=forms.RadioSelect, choices=[("now", "Send now"), ("later", "Schedule")]
    )
    schedule_at = forms.CharField(
        label="Date and time", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    schedule_tz = forms.ChoiceField(label="Time zone", initial="UTC", choices=_time_zones)
    ttl_value = forms.IntegerField(label="Expires after", min_value=0, initial=4)
    ttl_unit = forms.ChoiceField(choices=TTL_UNITS, initial="604800")

    # The language bar, the variant tabs and the A/B settings (herald/content.js) as one JSON
    # document: {"localizations": {...}, "variants": [...the others], "variant_mode", "ab_test"}.
    content_doc = forms.CharField(required=False, widget=forms.HiddenInput)

    test_to = forms.CharField(
        label="Test device",
        required=False,
        max_length=MAX_TOKEN_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "app user id or FCM token"}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["tenant"].queryset = tenants_for(user, Role.EDITOR)
        if self.fields["tenant"].queryset.count() == 1:
            self.fields["tenant"].widget = forms.HiddenInput()
            self.fields["tenant"].initial = self.fields["tenant"].queryset.get().pk
        self.fields["segment"].queryset = Segment.objects.filter(
            tenant__in=self.fields["tenant"].queryset
        ).select_related("tenant")
        self.fields["segment"].label_from_instance = segment_label
        self.fields["rules"].initial = json.dumps(no_rules())
        self.fields["rules"].widget.attrs["data-preview-url"] = reverse("admin:audiences_segment_preview")
        self.data_pairs: list[tuple[str, str]] = self._read_pairs()
        self.data_errors: list[str] = []

    def _read_pairs(self) -> list[tuple[str, str]]:
        if not self.is_bound:
            return list((self.initial.get("data") or {}).items())
        keys, values = self.data.getlist("data_key"), self.data.getlist("data_value")
        return [(k, v) for k, v in zip(keys, values, strict=False) if k.strip() or v.strip()]

    # --- Reading what staff typed (the rules are the API's, applied in clean()) -------------

    def clean_countries(self):
        return [c.upper() for c in split_list(self.cleaned_data["countries"])]

    def clean_languages(self):
        return [c.lower() for c in split_list(self.cleaned_data["languages"])]

    def clean_app_user_ids(self):
        return split_list(self.cleaned_data["app_user_ids"])

    def clean_tokens(self):
        return list(dict.fromkeys(t for t in re.split(r"\s+", self.cleaned_data["tokens"]) if t))

    def clean_segment(self):
        segment, tenant = self.cleaned_data["segment"], self.cleaned_data.get("tenant")
        if self.cleaned_data.get("audience") != Audience.SEGMENT:
            return None
        if segment is not None and tenant is not None and segment.tenant_id != tenant.pk:
            raise forms.ValidationError("This segment belongs to another tenant.", code="invalid_choice")
        if segment is not None:
            try:
                rule_doc.stored(segment.rules)
            except rule_doc.RuleError as exc:
                raise forms.ValidationError(
                    f"This segment's saved rules cannot be used ({exc}); correct them in the segment editor.",
                    code=UNUSABLE_RULES,
                ) from None
        return segment

    def clean_rules(self):
        """The rule document, checked and normalised by the segments' own rules (audiences.rules)."""
        if self.cleaned_data.get("audience") != Audience.RULES:
            return None
        try:
            return rule_doc.parse(json.loads(self.cleaned_data["rules"] or "{}"))
        except ValueError as exc:  # RuleError is a ValueError too
            if isinstance(exc, rule_doc.RuleError):
                raise forms.ValidationError(str(exc), code="invalid_rules") from None
            raise forms.ValidationError("The rules could not be read; reload the page.") from None

    def clean_topic(self):
        return self.cleaned_data["topic"].strip().removeprefix("/topics/")

    def clean(self):
        cleaned = super().clean()
        self._clean_data_pairs(cleaned)
        if "ttl_value" in cleaned and "ttl_unit" in cleaned:
            cleaned["ttl_seconds"] = cleaned["ttl_value"] * int(cleaned["ttl_unit"])
        cleaned["schedule"] = None
        if cleaned.get("when") == "later" and cleaned.get("schedule_tz"):
            self._clean_schedule(cleaned)
        self._clean_content_doc(cleaned)

        self.spec = None
        api = MessageCreateSerializer(data=self._api_body(cleaned))
        if api.is_valid():
            self.spec = api.to_input()
            # Other languages and variants: checked by the same rules in _clean_content_doc.
            for name in ("localizations", "variants", "variant_mode", "ab_test"):
                setattr(self.spec, name, cleaned.get(name))
        else:
            self._add_api_errors(api.errors)
        if self.data_errors:
            self.add_error(None, "Data: " + " ".join(self.data_errors))
        return cleaned

    def _clean_data_pairs(self, cleaned):
        data = {}
        for key, value in self.data_pairs:
            key = key.strip()
            if not key:
                self.data_errors.append(f"The value {value[:40]!r} has no key.")
            elif key in data:
                self.data_errors.append(f"{key!r} appears twice.")
            data[key] = value
        if len(self.data_pairs) > MAX_DATA_PAIRS:
            self.data_errors.append(f"At most {MAX_DATA_PAIRS} data pairs.")
        cleaned["data"] = data

    def _clean_content_doc(self, cleaned):
        """Other languages and variants, checked by the API's own rules (ComposedContentSerializer)."""
        cleaned.update(localizations={}, variants=[], variant_mode="split", ab_test=None)
        raw = (cleaned.get("content_doc") or "").strip()
        if not raw or "title" not in cleaned or "body" not in cleaned:
            return
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self.add_error("content_doc", "The languages and variants could not be read; reload the page.")
            return
        first = {k: cleaned[k] for k in ("title", "body", "image_url", "click_link") if cleaned.get(k)}
        others = doc.get("variants") or []
        payload = {k: v for k, v in doc.items() if k in ("variant_mode", "ab_test")}
        if others:
            payload["variants"] = [{**first, "localizations": doc.get("localizations") or {}}, *others]
        else:
            payload.update(first, localizations=doc.get("localizations") or {})
            payload.pop("ab_test", None)
            payload["variant_mode"] = "split"
        tenant = cleaned.get("tenant")
        serializer = ComposedContentSerializer(
            data=payload,
            context={
                "default_language": tenant.default_language if tenant else None,
                "data": cleaned.get("data", {}),
            },
        )
        if not serializer.is_valid():
            self.add_error("content_doc", describe_errors(serializer.errors))
            return
        data = content.spread_variants(dict(serializer.validated_data))
        cleaned.update(
            localizations=data.get("localizations") or {},
            variants=data.get("variants") or [],
            variant_mode=data.get("variant_mode", "split"),
            ab_test=data.get("ab_test"),
        )

    def _api_body(self, c) -> dict:
        """What the form says, as the body of POST /api/v1/messages."""
        options = {
            name: c.get(name)
            for name in ("android_channel", "sound", "badge", "collapse_key", "analytics_label")
        }
        body = {
            "title": c.get("title", ""),
            "body": c.get("body", ""),
            "image_url": c.get("image_url"),
            "click_link": c.get("click_link"),
            "data": c.get("data"),
            "priority": c.get("priority"),
            "data_only": c.get("data_only"),
            "ttl_seconds": c.get("ttl_seconds"),
            "options": {k: v for k, v in options.items() if v not in ("", None)},
            "audience": {"kind": c.get("audience") or Audience.ALL, **self.audience_params()},
            "schedule_at": c["schedule"].isoformat() if c.get("schedule") else None,
        }
        return {k: v for k, v in body.items() if v not in ("", None)}

    def _add_api_errors(self, errors: dict) -> None:
        """Put the API's verdict beside the form's fields (nested ones: audience, options)."""
        for name, problems in errors.items():
            if isinstance(problems, dict) and name in ("audience", "options"):
                for inner, inner_problems in problems.items():
                    self._add_api_error(inner, inner_problems)
            else:
                self._add_api_error(name, problems)

    def _add_api_error(self, name, problems) -> None:
        texts = _texts(problems)
        if name == "data":
            self.data_errors.extend(texts)
            return
        field = FORM_FIELDS.get(name, name)
        if field not in self.fields:
            field = None
        elif field in self.errors:
            return  # the form already said what is wrong with it
        self.add_error(field, texts)

    def _clean_schedule(self, cleaned):
        raw = (cleaned.get("schedule_at") or "").strip()
        if not raw:
            self.add_error("schedule_at", "Choose when to send it.")
            return
        try:
            naive = datetime.fromisoformat(raw)
        except ValueError:
            self.add_error("schedule_at", "Enter a date and time like 2026-11-24 09:30.")
            return
        when = naive.replace(tzinfo=zoneinfo.ZoneInfo(cleaned["schedule_tz"]))
        # The composer's own rule: staff pick a time to come (the API takes a time just
        # past as "now"); how far ahead is the API's rule.
        if when <= timezone.now() + timedelta(seconds=30):
            self.add_error("schedule_at", "That time has passed; choose one in the future or send now.")
            return
        cleaned["schedule"] = when

    # --- Results ------------------------------------------------------------------------

    def audience_params(self) -> dict:
        """The audience parameters as `messaging.selectors` and `Message.audience_params` take them."""
        c = self.cleaned_data
        kind = c["audience"]
        if kind == Audience.FILTER:
            params = {
                "platforms": c.get("platforms"),
                "countries": c.get("countries"),
                "languages": c.get("languages"),
            }
        elif kind == Audience.USERS:
            params = {"app_user_ids": c.get("app_user_ids")}
        elif kind == Audience.TOKENS:
            params = {"tokens": c.get("tokens")}
        elif kind == Audience.TOPIC:
            params = {"topic": c.get("topic")}
        elif kind == Audience.CONDITION:
            params = {"condition": c.get("condition")}
        elif kind == Audience.SEGMENT:
            params = {"segment_id": c["segment"].pk if c.get("segment") else None}
        elif kind == Audience.RULES:
            params = {"rules": c.get("rules")}
        else:
            params = {}
        return {k: v for k, v in params.items() if v}

    def to_spec(self) -> MessageInput:
        """The push the valid form describes, as the API's serializer read it."""
        spec = self.spec
        if spec.schedule_at is not None:
            spec.schedule_at = self.cleaned_data["schedule"]  # keep the zone staff wrote it in
        return spec

    @classmethod
    def initial_from(cls, message: Message, *, with_schedule: bool = False) -> dict:
        """Initial values that compose a copy of `message` (and its schedule: editing a draft)."""
        p, o = message.audience_params or {}, message.options or {}
        ttl, unit = message.ttl_seconds, "60"
        for value, _ in reversed(TTL_UNITS):
            if ttl and ttl % int(value) == 0:
                unit = value
                break
        return {
            "tenant": message.tenant_id,
            "title": message.title,
            "body": message.body,
            "image_url": message.image_url,
            "click_link": message.click_link,
            "data": message.data or {},
            "data_only": "1" if message.data_only else "0",
            "priority": message.priority,
            "android_channel": o.get("android_channel", ""),
            "sound": o.get("sound", ""),
            "badge": o.get("badge"),
            "collapse_key": o.get("collapse_key", ""),
            "analytics_label": o.get("analytics_label", ""),
            "audience": message.audience,
            "platforms": p.get("platforms", []),
            "countries": ", ".join(p.get("countries", [])),
            "languages": ", ".join(p.get("languages", [])),
            "app_user_ids": "\n".join(p.get("app_user_ids", [])),
            "tokens": "\n".join(p.get("tokens", [])),
            "topic": p.get("topic", ""),
            "condition": p.get("condition", ""),
            "segment": p.get("segment_id"),
            "rules": json.dumps(p.get("rules") or no_rules()),
            "ttl_value": ttl // int(unit),
            "ttl_unit": unit,
            "content_doc": content_doc(message),
            **(cls._schedule_initial(message) if with_schedule and message.schedule_at else {}),
        }

    @staticmethod
    def _schedule_initial(message: Message) -> dict:
        zone = message.schedule_tz if "/" in message.schedule_tz else "UTC"
        local = message.schedule_at.astimezone(zoneinfo.ZoneInfo(zone))
        return {"when": "later", "schedule_at": local.strftime("%Y-%m-%dT%H:%M"), "schedule_tz": zone}


def describe_errors(errors, path: str = "") -> str:
    """The serializer's nested errors as one sentence: "variants 1 › localizations › tr: …"."""
    if isinstance(errors, dict):
        return " ".join(describe_errors(v, f"{path} › {k}" if path else str(k)) for k, v in errors.items())
    if isinstance(errors, list):
        return " ".join(describe_errors(e, path) for e in errors)
    return f"{path}: {errors}" if path else str(errors)


def content_doc(message: Message) -> str:
    """The composer's document for a message's other languages and variants (a copy, a draft)."""
    composed = content.variants_of(message)

    def given(c):  # the API's shape: no empty optional fields
        return {k: v for k, v in c.as_dict().items() if v or k in ("title", "body")}

    def localized(variant):
        return {lang: given(c) for lang, c in variant.localizations.items()}

    doc = {
        "localizations": localized(composed[0]),
        "variant_mode": message.variant_mode,
        "variants": [{**given(v.content), "localizations": localized(v)} for v in composed[1:]],
    }
    ab_test = getattr(message, "ab_test", None) if message.variant_mode == "ab_test" else None
    if ab_test is not None:
        doc["ab_test"] = {
            k: getattr(ab_test, k)
            for k in ("test_percent", "wait_seconds", "metric", "min_opens", "fallback_variant")
        }
    return json.dumps(doc, ensure_ascii=False)
