"""What each device is told: a message's variants × languages, and who gets which.

A message's own title, body, image_url and click_link are variant 0 in `message.language`;
every other (variant, language) is a MessageContent row. A device gets the variant its user
is assigned (`variant_for`: a hash of message and user, so a user's devices agree) in its
user's language when the message has it, else in the message's language (the tenant's
default language when the message was made). Fan-out records both on the Delivery.

Nothing here queries per device: `ContentPlan` is loaded once per chunk (or fan-out) and
answers from memory.
"""

import copy
import hashlib
from dataclasses import dataclass, field

from messaging.models import AbTest, Message, MessageContent, VariantMode

# A user's place in a message's audience, 0 to BUCKETS-1: the A/B test group is the users
# below test_percent of it.
BUCKETS = 10_000


@dataclass(frozen=True)
class Content:
    title: str
    body: str
    image_url: str = ""
    click_link: str = ""

    def as_dict(self) -> dict:
        return {
            "title": self.title,
            "body": self.body,
            "image_url": self.image_url,
            "click_link": self.click_link,
        }


@dataclass(kw_only=True)
class VariantInput:
    """One variant as composed: its content in the message's language and its localizations."""

    content: Content
    localizations: dict[str, Content] = field(default_factory=dict)


def _hash(message_id: int, user_id: int, salt: str) -> int:
    digest = hashlib.blake2b(f"{message_id}:{user_id}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def bucket_of(message_id: int, user_id: int) -> int:
    """Where a user falls in a message's audience, 0–9999, the same every time."""
    return _hash(message_id, user_id, "bucket") % BUCKETS


def variant_for(message_id: int, user_id: int, variant_count: int) -> int:
    """The variant a user gets: even over users, the same for every device of the user."""
    if variant_count <= 1:
        return 0
    return _hash(message_id, user_id, "variant") % variant_count


def in_test_group(message_id: int, user_id: int, test_percent: int) -> bool:
    return bucket_of(message_id, user_id) < test_percent * BUCKETS // 100


@dataclass
class ContentPlan:
    """A message's content by (variant, language), and the rule that assigns it to users."""

    message: Message
    contents: dict[tuple[int, str], Content]
    ab_test: AbTest | None = None

    @classmethod
    def of(cls, message: Message) -> "ContentPlan":
        """One query for the content rows, one for the A/B test when the message has one."""
        contents = {
            (0, message.language): Content(message.title, message.body, message.image_url, message.click_link)
        }
        for row in MessageContent.objects.filter(message_id=message.pk):
            contents[(row.variant, row.language)] = Content(
                row.title, row.body, row.image_url, row.click_link
            )
        ab_test = None
        if message.variant_mode == VariantMode.AB_TEST and message.variant_count > 1:
            ab_test = AbTest.objects.filter(message_id=message.pk).first()
        return cls(message=message, contents=contents, ab_test=ab_test)

    @property
    def languages(self) -> set[str]:
        return {language for _, language in self.contents}

    def language_for(self, user_language: str | None) -> str:
        """The user's language when the message speaks it, else the message's own."""
        if user_language and (0, user_language) in self.contents:
            return user_language
        return self.message.language

    def content(self, variant: int, language: str) -> Content:
        return (
            self.contents.get((variant, language))
            or self.contents.get((variant, self.message.language))
            or self.contents[(0, self.message.language)]
        )

    def in_test_share(self, user_id: int) -> bool:
        """Whether the split puts the user in the A/B test's group."""
        return in_test_group(self.message.pk, user_id, self.ab_test.test_percent)

    def assign(
        self, rows, *, phase: str = "all", sent=frozenset(), variant_of=None
    ) -> list[tuple[int, int, str]]:
        """(device_id, variant, language) for the rows (device_id, user_id, user_language)
        that this phase sends to: "all" (no A/B test), "test" (the test group, its variants
        split evenly) or "rest" (everyone the test did not reach, the winner). A row may carry
        a fourth value, the variant a "recipients" message lists for the user (a campaign's
        rotation), which wins when not None.

        The rest is whoever is in the audience when it goes out, not the complement of the
        split: a device in `sent` (the test sent to it) gets nothing more; a device of a user
        in `variant_of` (a user the test reached on another device: a device added since)
        gets that user's variant, so that a user's devices agree; everyone else, a newcomer
        whose hash falls in the test's share included, gets the winner."""
        message_id, count = self.message.pk, self.message.variant_count
        variant_of = variant_of or {}
        out = []
        for device_id, user_id, user_language, *listed in rows:
            if listed and listed[0] is not None and listed[0] < count:
                variant = listed[0]
            elif phase == "all":
                variant = variant_for(message_id, user_id, count)
            elif phase == "test":
                if not self.in_test_share(user_id):
                    continue
                variant = variant_for(message_id, user_id, count)
            else:
                if device_id in sent:
                    continue
                variant = variant_of.get(user_id, self.ab_test.winner)
            out.append((device_id, variant, self.language_for(user_language)))
        return out

    def push(self, variant: int, language: str) -> Message:
        """The message as `services.fcm_message` builds it, with this variant's content in this
        language (a copy; the stored message is untouched)."""
        content = self.content(variant, language)
        push = copy.copy(self.message)
        push.title, push.body = content.title, content.body
        push.image_url, push.click_link = content.image_url, content.click_link
        return push


def save_contents(
    *, message: Message, variants: list[VariantInput], localizations: dict[str, Content]
) -> None:
    """Store a message's other languages and variants (replacing any it had: a draft
    rewritten). `localizations` are variant 0's; `variants`, when given, are all of them,
    the first being the message's own fields."""
    MessageContent.objects.filter(message=message).delete()
    rows = [
        MessageContent(message=message, variant=0, language=lang, **c.as_dict())
        for lang, c in localizations.items()
    ]
    for index, variant in enumerate(variants):
        if index:
            rows.append(
                MessageContent(
                    message=message, variant=index, language=message.language, **variant.content.as_dict()
                )
            )
            rows.extend(
                MessageContent(message=message, variant=index, language=lang, **c.as_dict())
                for lang, c in variant.localizations.items()
            )
    MessageContent.objects.bulk_create(rows)


def variants_of(message: Message) -> list[VariantInput]:
    """A message's variants as composed (variant 0 included), for pages, the API and copies."""
    plan = ContentPlan.of(message)
    out = [VariantInput(content=plan.contents[(0, message.language)]) for _ in range(message.variant_count)]
    for (variant, language), content in sorted(plan.contents.items()):
        if variant >= message.variant_count:
            continue
        if language == message.language:
            out[variant].content = content
        else:
            out[variant].localizations[language] = content
    return out


def spread_variants(fields: dict) -> dict:
    """Validated message fields (the API's or the composer's) with the first variant's content
    as the message's own title, body, image_url, click_link and localizations."""
    variants = fields.get("variants") or []
    if variants:
        first = variants[0]
        fields = {**fields, **first.content.as_dict(), "localizations": first.localizations}
    return fields
