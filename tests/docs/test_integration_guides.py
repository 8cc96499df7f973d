"""The integration guides (docs/integration) run against a live Herald, so they cannot drift from the API.

Each guide is a script: its marked requests run in order against a fresh tenant and
each answer must be the one documented under it (see the guides' README for the
markers). The code samples cannot run here, but the field names they send are checked
against the API's own serializers, and the Python sample runs for real.
"""

import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
from django.core.cache import cache
from django.utils import timezone

from api import throttling
from devices.models import Device
from devices.serializers import EventSerializer, RefreshTokenSerializer
from messaging.models import Delivery, Message
from messaging.serializers import DeveloperPushSerializer, PushOpenedSerializer

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "integration"
APP_GUIDES = ["android.md", "ios.md", "web.md"]
ALL_GUIDES = [*APP_GUIDES, "backend.md"]
DOCUMENTED_BASE_URL = "https://push.example.com"

# What CLIENT_API.md says each endpoint answers: every guide that calls it documents them all.
APP_STATUSES = {
    "/events": {200, 400, 401},
    "/devices/refresh-token": {200, 400, 401, 404, 409},
    "/pushes/opened": {200, 400, 401},
}
BACKEND_STATUSES = {
    "/developer/push": {201, 400, 401, 404, 429},
    "/api/v1/messages": {200, 202, 400, 403},
}
APP_SERIALIZERS = [EventSerializer, RefreshTokenSerializer, PushOpenedSerializer]


# --- Reading a guide ---------------------------------------------------------------------

TOKENS = re.compile(
    r"<!--\s*(?P<kind>request|response|setup|run|result)\b:?(?P<arg>.*?)-->"
    r"|^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.S | re.M,
)


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: str | None
    line: int


@dataclass
class Expect:
    status: int
    headers: list[str]
    body: str


@dataclass
class Step:
    kind: str  # "call", "setup" or "run"
    line: int
    call: Call | None = None
    expect: Expect | None = None
    code: str = ""
    result: str | None = None


@dataclass
class Guide:
    name: str
    steps: list[Step] = field(default_factory=list)
    # (language, code, marked?) for every fenced block
    blocks: list[tuple[str, str, bool]] = field(default_factory=list)

    def calls(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "call"]

    def code(self, *languages: str) -> str:
        return "\n".join(code for lang, code, _ in self.blocks if lang in languages)


def _headers(parts: list[str]) -> dict[str, str]:
    headers = {}
    for part in parts:
        name, _, value = part.partition(":")
        headers[name.strip()] = value.strip()
    return headers


def parse_curl(command: str, line: int) -> Call:
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl", f"line {line}: a marked sh block must be one curl command"
    method, headers, body, url = None, {}, None, None
    words = iter(words[1:])
    for word in words:
        if word in ("-X", "--request"):
            method = next(words)
        elif word in ("-H", "--header"):
            headers.update(_headers([next(words)]))
        elif word in ("-d", "--data", "--data-raw"):
            body = next(words)
        elif not word.startswith("-"):
            url = word
    assert url and url.startswith(DOCUMENTED_BASE_URL), f"line {line}: curl must call {DOCUMENTED_BASE_URL}"
    if body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # what curl sends by default
    return Call(
        method=method or ("POST" if body is not None else "GET"),
        path=urlsplit(url).path,
        headers=headers,
        body=body,
        line=line,
    )


def parse_call(arg: str, body: str | None, line: int) -> Call:
    head, *header_parts = [part.strip() for part in arg.split("|")]
    method, path = head.split(maxsplit=1)
    headers = {"Content-Type": "application/json", **_headers(header_parts)}
    return Call(method=method, path=path, headers=headers, body=body, line=line)


def parse(name: str) -> Guide:
    text = (GUIDES / name).read_text()
    guide = Guide(name)
    pending: tuple[str, str, int] | None = None  # a marker waiting for its block
    for match in TOKENS.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if match["kind"]:
            assert pending is None, f"{name}:{pending[2]}: <!-- {pending[0]} --> has no code block"
            kind, arg = match["kind"], match["arg"].strip()
            if kind == "setup":
                head, _, body = arg.partition("\n")
                guide.steps.append(Step("setup", line, call=parse_call(head, body.strip(), line)))
            else:
                pending = (kind, arg, line)
            continue
        lang, code = match["lang"], match["code"]
        guide.blocks.append((lang, code, pending is not None))
        if pending is None:
            continue
        kind, arg, marker_line = pending
        pending = None
        if kind == "request":
            call = parse_curl(code, line) if lang == "sh" else parse_call(arg, code, line)
            assert lang in ("json", "sh"), f"{name}:{line}: a request is a json or sh block"
            guide.steps.append(Step("call", marker_line, call=call))
        elif kind == "response":
            assert lang == "json", f"{name}:{line}: a response is a json block"
            previous = guide.steps[-1] if guide.steps else None
            assert previous and previous.kind == "call" and previous.expect is None, (
                f"{name}:{line}: a response must follow a request"
            )
            status, *header_names = [part.strip() for part in arg.split("|")]
            previous.expect = Expect(status=int(status), headers=header_names, body=code)
        elif kind == "run":
            assert lang == "python", f"{name}:{line}: only python blocks run"
            guide.steps.append(Step("run", marker_line, code=code))
        elif kind == "result":
            previous = guide.steps[-1] if guide.steps else None
            assert previous and previous.kind == "run", f"{name}:{line}: a result must follow a run block"
            previous.result = code
    assert pending is None, f"{name}:{pending[2]}: <!-- {pending[0]} --> has no code block"
    for step in guide.calls():
        assert step.expect is not None, f"{name}:{step.line}: the request has no documented response"
    return guide


# --- Comparing answers --------------------------------------------------------------------

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
KINDS = {
    "string": lambda v: isinstance(v, str) and v != "",
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
    "timestamp": lambda v: isinstance(v, str) and bool(RFC3339.match(v)),
}


def mismatches(expected, actual, where: str = "body", *, error_body: bool = False) -> list[str]:
    """How `actual` differs from a documented value (with its placeholders); [] when it matches."""
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        kinds = expected[1:-1].split(" or ")
        assert all(k in KINDS for k in kinds), f"unknown placeholder {expected}"
        return [] if any(KINDS[k](actual) for k in kinds) else [f"{where}: {actual!r} is not {expected}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} is not an object"]
        shown = {k: v for k, v in expected.items() if k != "..."}
        problems = [f"{where}.{k}: missing" for k in shown if k not in actual]
        extra = set(actual) - set(shown)
        if error_body:
            extra -= {"errors"}  # validation errors also list every problem; the guides show `field`
        if extra and "..." not in expected:
            problems.append(f"{where}: undocumented fields {sorted(extra)}")
        for key in shown.keys() & actual.keys():
            problems += mismatches(shown[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {actual!r} is not {expected!r}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in mismatches(e, a, f"{where}[{i}]")
        ]
    if expected == actual and type(expected) is type(actual):
        return []
    return [f"{where}: {actual!r} != {expected!r}"]


# --- Running a guide ----------------------------------------------------------------------


class GuideRunner:
    """Plays a guide's steps against the live server, filling in the placeholders."""

    def __init__(self, *, guide: Guide, base_url: str, tenant, app_key: str, server_key: str, settings):
        self.guide, self.base_url, self.tenant, self.settings = guide, base_url, tenant, settings
        self.values = {
            "YOUR_TENANT_ID": tenant.tenant_id,
            "YOUR_APP_KEY": app_key,
            "YOUR_SERVER_KEY": server_key,
            DOCUMENTED_BASE_URL: base_url,
        }
        self.session = requests.Session()
        self.session.trust_env = False

    def fill(self, text: str) -> str:
        if "TRACKING_TOKEN_FROM_THE_PUSH" in text and "TRACKING_TOKEN_FROM_THE_PUSH" not in self.values:
            self.values["TRACKING_TOKEN_FROM_THE_PUSH"] = self.delivered_tracking_token()
        if "MESSAGE_ID" in self.values:
            text = text.replace('"MESSAGE_ID"', self.values["MESSAGE_ID"])
        for placeholder, value in self.values.items():
            text = text.replace(placeholder, value)
        return text

    def delivered_tracking_token(self) -> str:
        """A push Herald delivered to the tenant's newest device: what the app finds in the data."""
        device = Device.objects.filter(tenant=self.tenant).order_by("-pk").first()
        assert device is not None, f"{self.guide.name}: an open is reported before any device registered"
        message = Message.objects.create(
            tenant=self.tenant,
            title="Hi",
            body="There",
            status=Message.Status.COMPLETED,
            targeted_count=1,
            sent_count=1,
        )
        delivery = Delivery.objects.create(
            message=message, device=device, status=Delivery.Status.SENT, sent_at=timezone.now(), attempts=1
        )
        return delivery.tracking_token

    def send(self, call: Call) -> requests.Response:
        body = None if call.body is None else self.fill(call.body)
        if body is not None and call.headers.get("Content-Type") == "application/json":
            json.loads(body)  # the documented body must be valid JSON
        headers = {name: self.fill(value) for name, value in call.headers.items()}
        return self.session.request(
            call.method,
            self.base_url + self.fill(call.path),
            headers=headers,
            data=None if body is None else body.encode(),
            timeout=10,
        )

    def send_until_rate_limited(self, call: Call) -> requests.Response:
        rate = self.settings.DEVELOPER_PUSH_RATE
        self.settings.DEVELOPER_PUSH_RATE = "1/min"
        cache.clear()
        throttling.reset_local_counters()
        try:
            for _ in range(3):
                response = self.send(call)
                if response.status_code == 429:
                    return response
            return response
        finally:
            self.settings.DEVELOPER_PUSH_RATE = rate
            cache.clear()
            throttling.reset_local_counters()

    def check(self, step: Step) -> list[str]:
        call, expect = step.call, step.expect
        where = f"{self.guide.name}:{step.line} {call.method} {call.path}"
        response = self.send_until_rate_limited(call) if expect.status == 429 else self.send(call)
        if response.status_code != expect.status:
            return [f"{where}: answered {response.status_code}, documented {expect.status}: {response.text}"]
        problems = [f"{where}: no {name} header" for name in expect.headers if name not in response.headers]
        body = response.json()
        problems += [
            f"{where}: {p}"
            for p in mismatches(
                json.loads(self.fill(expect.body)), body, error_body=response.status_code >= 400
            )
        ]
        if call.path.startswith("/api/v1/messages") and isinstance(body, dict) and "id" in body:
            self.values["MESSAGE_ID"] = str(body["id"])
        return problems

    def run_python(self, step: Step) -> tuple[dict, list[str]]:
        namespace: dict = {"__name__": "guide_sample"}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(self.fill(step.code), f"{self.guide.name}:{step.line}", "exec"), namespace)
        problems = []
        if step.result is not None:
            expected = json.loads(self.fill(step.result))
            problems = [
                f"{self.guide.name}:{step.line} result: {p}"
                for p in mismatches(expected, namespace.get("result"), "result")
            ]
        return namespace, problems

    def run(self) -> tuple[list[str], dict]:
        problems, namespace = [], {}
        for step in self.guide.steps:
            if step.kind == "setup":
                response = self.send(step.call)
                assert response.status_code < 300, f"{self.guide.name}:{step.line} setup: {response.text}"
            elif step.kind == "call":
                problems += self.check(step)
            else:
                namespace, found = self.run_python(step)
                problems += found
        return problems, namespace


@pytest.fixture
def play(live_server, tenant, app_key, server_key, settings):
    cache.clear()  # rate limits from earlier tests
    throttling.reset_local_counters()

    def play(name: str) -> tuple[list[str], dict]:
        runner = GuideRunner(
            guide=parse(name),
            base_url=live_server.url,
            tenant=tenant,
            app_key=app_key,
            server_key=server_key,
            settings=settings,
        )
        return runner.run()

    return play


# --- The tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_GUIDES)
def test_every_request_in_the_guide_gets_the_documented_answer(play, name):
    problems, _ = play(name)

    assert problems == []


@pytest.mark.parametrize("name", ALL_GUIDES)
def test_every_json_body_and_curl_command_in_the_guides_is_tested(name):
    guide = parse(name)

    untested = [
        code[:60]
        for lang, code, marked in guide.blocks
        if not marked and (lang == "json" or (lang == "sh" and "curl" in code) or lang == "python")
    ]

    assert guide.calls(), "a guide without requests"
    assert untested == []


@pytest.mark.parametrize("name", APP_GUIDES)
def test_the_app_guides_document_every_answer_of_the_app_endpoints(name):
    documented = _documented_statuses(parse(name))

    assert {
        path: documented.get(path, set()) & statuses for path, statuses in APP_STATUSES.items()
    } == APP_STATUSES
    refresh_errors = {
        json.loads(s.expect.body).get("error")
        for s in parse(name).calls()
        if s.call.path == "/devices/refresh-token" and s.expect.status == 400
    }
    assert refresh_errors >= {"missing_field", "identical_tokens"}


def test_the_backend_guide_documents_every_answer_of_the_server_endpoints():
    documented = _documented_statuses(parse("backend.md"))

    assert {
        path: documented.get(path, set()) & statuses for path, statuses in BACKEND_STATUSES.items()
    } == BACKEND_STATUSES


def _documented_statuses(guide: Guide) -> dict[str, set[int]]:
    statuses: dict[str, set[int]] = {}
    for step in guide.calls():
        path = "/api/v1/messages" if step.call.path.startswith("/api/v1/messages") else step.call.path
        statuses.setdefault(path, set()).add(step.expect.status)
    return statuses


# Field names in the code samples: `.put("name"` in Kotlin, `"name":` in Swift, JavaScript
# and Python dictionaries.
CODE_KEYS = {
    "kotlin": re.compile(r'\.put\("([A-Za-z_]+)"'),
    "swift": re.compile(r'"([A-Za-z_]+)"\s*:'),
    "js": re.compile(r'"([A-Za-z_]+)"\s*:'),
    "python": re.compile(r'^\s*payload = \{(.*?)\}$|payload\["([A-Za-z_]+)"\]', re.M),
}
CODE_LANGUAGE = {"android.md": "kotlin", "ios.md": "swift", "web.md": "js", "backend.md": "python"}


def _code_keys(name: str) -> tuple[set[str], str]:
    language = CODE_LANGUAGE[name]
    code = parse(name).code(language)
    keys = set()
    for match in CODE_KEYS[language].findall(code):
        for found in match if isinstance(match, tuple) else (match,):
            if ":" in found:  # Python: the dict literal assigned to `payload`
                keys.update(re.findall(r'"([A-Za-z_]+)"\s*:', found))
            elif found:
                keys.add(found)
    return keys, code


@pytest.mark.parametrize("name", APP_GUIDES)
def test_the_app_code_samples_send_only_fields_herald_knows_and_every_required_one(name):
    keys, code = _code_keys(name)
    known = set().union(*(serializer().fields for serializer in APP_SERIALIZERS))
    required = {n for serializer in APP_SERIALIZERS for n, f in serializer().fields.items() if f.required}

    assert keys - known == set()
    assert {n for n in required if f'"{n}"' not in code} == set()
    assert [path for path in APP_STATUSES if f'"{path}"' not in code] == []


def test_the_python_sample_sends_only_fields_herald_knows_and_every_required_one():
    keys, code = _code_keys("backend.md")
    fields = DeveloperPushSerializer().fields

    assert keys - set(fields) == set()
    assert {n for n, f in fields.items() if f.required} <= keys
    assert "/developer/push" in code


def test_the_python_sample_returns_none_without_a_device_and_refuses_a_bad_key(play):
    _, sample = play("backend.md")

    assert sample["send_push"]("user_without_devices", "Hi", "There") is None
    sample["SERVER_KEY"] = "hrld_srv_not-a-key"
    with pytest.raises(sample["PushRefused"], match="401"):
        sample["send_push"]("user_123", "Hi", "There")


def test_the_python_sample_waits_out_a_429_and_sends(play, settings, frozen_clock):
    _, sample = play("backend.md")
    settings.DEVELOPER_PUSH_RATE = "1/s"
    cache.clear()
    throttling.reset_local_counters()
    slept = []

    def sleep(seconds):  # the sample's time.sleep moves the stopped clock on, not waiting for real
        slept.append(seconds)
        frozen_clock.shift(seconds)

    sample["time"] = SimpleNamespace(sleep=sleep)

    answers = [sample["send_push"]("user_123", "Hi", f"Push {i}") for i in range(2)]

    assert [a["push_count"] for a in answers] == [1, 1]
    assert slept == [1]  # Retry-After: 1
    assert Message.objects.filter(body__startswith="Push ").count() == 2


# --- The guides' shell commands --------------------------------------------------------------

MANAGE_PY = re.compile(r"^(?:\.venv/bin/python )?manage\.py\s")
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def manage_py_commands(name: str) -> list[list[str]]:
    """Every `manage.py …` command in a guide, in order: in sh blocks and in inline code."""
    text = (GUIDES / name).read_text()
    commands = []
    for match in TOKENS.finditer(text):
        if match["code"] is not None and match["lang"] == "sh":
            for line in match["code"].replace("\\\n", " ").splitlines():
                if MANAGE_PY.match(line.strip()):
                    commands.append((match.start(), line.strip()))
    prose = TOKENS.sub(lambda m: " " * len(m[0]) if m["code"] is not None else m[0], text)
    commands += [(m.start(), m[1]) for m in INLINE_CODE.finditer(prose) if MANAGE_PY.match(m[1])]
    return [
        shlex.split(command, comments=True)[1:]
        if command.startswith("manage.py")
        else shlex.split(command, comments=True)[2:]
        for _, command in sorted(commands)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ALL_GUIDES)
def test_every_manage_py_command_in_the_guide_runs_as_written(name):
    from django.core.management import call_command

    from tenants.models import ApiKey, Tenant, hash_key

    commands = [
        [word.replace("YOUR_TENANT_ID", "guide-shop") for word in words] for words in manage_py_commands(name)
    ]
    assert any(words[0] == "create_api_key" for words in commands), "the guide says how to get a key"
    if not any(words[0] == "create_tenant" for words in commands):
        Tenant.objects.create(tenant_id="guide-shop", name="Guide shop")  # the operator made it

    for words in commands:
        out = io.StringIO()
        call_command(*words, stdout=out, stderr=io.StringIO())
        if words[0] == "create_api_key":
            key = ApiKey.objects.get(key_hash=hash_key(out.getvalue().strip()))
            assert (key.tenant.tenant_id, key.kind) == ("guide-shop", words[words.index("--kind") + 1])


def test_the_index_links_every_guide():
    index = (GUIDES / "README.md").read_text()
    guides = sorted(p.name for p in GUIDES.glob("*.md") if p.name != "README.md")

    assert guides == sorted(ALL_GUIDES)
    assert [g for g in guides if f"]({g})" not in index] == []


def test_a_wrong_documented_answer_is_caught():
    # The checker itself: what a drifted guide would look like.
    assert mismatches({"success": True}, {"success": True}) == []
    assert mismatches({"fingerprint": "<string>"}, {"fingerprint": ""}) != []
    assert mismatches({"success": True}, {"success": True, "extra": 1}) != []
    assert (
        mismatches(
            {"error": "x", "detail": "<string>"}, {"error": "x", "detail": "d", "errors": {}}, error_body=True
        )
        == []
    )
    assert mismatches({"id": "<integer>", "...": "..."}, {"id": 3, "title": "t"}) == []
    assert mismatches({"open_rate": "<number or null>"}, {"open_rate": None}) == []
    assert mismatches({"push_count": 1}, {"push_count": True}) != []
