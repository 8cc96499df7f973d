"""The guard on every request to a URL someone else chose (api/outbound.py): SSRF refusals."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api import outbound


def public(host, port):
    return ["93.184.216.34"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.1.2.3/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",  # IPv4 inside IPv6
        "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",  # multicast
        "https://240.0.0.1/hook",  # reserved
        "https://2130706433/hook",  # 127.0.0.1 as one decimal number
        "https://0x7f.1/hook",  # and in hex
        "https://0177.0.0.1/hook",  # and in octal
        "https://localhost/hook",
    ],
)
def test_check_url_refuses_private_loopback_link_local_and_reserved_addresses(url):
    with pytest.raises(outbound.UnsafeUrl) as refused:
        outbound.check_url(url)

    assert refused.value.code == "private_address"


def test_check_url_refuses_the_decimal_loopback_form_over_http_too():
    with pytest.raises(outbound.UnsafeUrl) as refused:
        outbound.check_url("http://2130706433/", allow_http=True)

    assert refused.value.code == "private_address"


def test_check_url_refuses_a_name_that_resolves_to_a_private_address():
    with pytest.raises(outbound.UnsafeUrl) as refused:
        outbound.check_url("https://hooks.example.com/x", resolver=lambda h, p: ["93.184.216.34", "10.0.0.7"])

    assert refused.value.code == "private_address"
    assert "10.0.0.7" in str(refused.value)


def test_check_url_accepts_a_public_https_url_and_keeps_the_addresses_it_checked():
    safe = outbound.check_url("https://hooks.example.com:8443/in?x=1", resolver=public)

    assert (safe.host, safe.port, safe.target, safe.addresses) == (
        "hooks.example.com",
        8443,
        "/in?x=1",
        ("93.184.216.34",),
    )
    assert safe.host_header == "hooks.example.com:8443"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://hooks.example.com/x", "https_required"),
        ("ftp://hooks.example.com/x", "https_required"),
        ("file:///etc/passwd", "https_required"),
        ("https://user:pass@hooks.example.com/x", "invalid_url"),
        ("https:///x", "invalid_url"),
        ("https://hooks.example.com:99999/x", "invalid_url"),
        ("https://hooks.example.com/x#frag", "invalid_url"),
        ("https://hooks example.com/x", "invalid_url"),
        ("https://hooks.example.com/\x00", "invalid_url"),
        ("https://bücher.example/x", "invalid_url"),
        ("https://" + "a" * 2000 + ".com/", "invalid_url"),
        ("", "invalid_url"),
    ],
)
def test_check_url_refuses_malformed_urls_and_plain_http(url, code):
    with pytest.raises(outbound.UnsafeUrl) as refused:
        outbound.check_url(url, resolver=public)

    assert refused.value.code == code


def test_check_url_allows_private_addresses_and_http_only_when_told_to():
    safe = outbound.check_url("http://127.0.0.1:8080/x", allow_http=True, allow_private=True)

    assert safe.addresses == ("127.0.0.1",)


def test_check_url_refuses_an_unresolvable_host_unless_resolution_is_optional():
    def nowhere(host, port):
        raise socket.gaierror("Name or service not known")

    with pytest.raises(outbound.UnsafeUrl) as refused:
        outbound.check_url("https://not-yet.example.com/", resolver=nowhere)
    assert refused.value.code == "unresolvable_host"

    assert (
        outbound.check_url(
            "https://not-yet.example.com/", resolver=nowhere, require_resolution=False
        ).addresses
        == ()
    )


# --- Sending ---------------------------------------------------------------------------------


class Recorder:
    def __init__(self, *, status=200, location="", hang=False):
        self.requests = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                if hang:
                    recorder.release.wait(5)
                    return
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                reply = b"internal details the sender must never see"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made = []

    def make(**kwargs):
        made.append(Recorder(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_post_refuses_a_private_address_before_connecting(recorder):
    target = recorder()

    with pytest.raises(outbound.UnsafeUrl):
        outbound.post(f"http://127.0.0.1:{target.port}/x", body=b"{}", headers={}, allow_http=True)

    assert target.requests == []


def test_post_connects_to_the_address_it_checked_and_names_the_host(recorder):
    # The resolver is asked once; whatever DNS says later (a rebinding attack) is never asked.
    target = recorder()
    answers = iter([["127.0.0.1"]])

    response = outbound.post(
        f"http://hooks.example.test:{target.port}/in",
        body=b'{"a":1}',
        headers={"X-Test": "1"},
        allow_http=True,
        allow_private=True,
        resolver=lambda host, port: next(answers),
    )

    assert (response.status, response.address) == (200, "127.0.0.1")
    [seen] = target.requests
    assert seen["headers"]["Host"] == f"hooks.example.test:{target.port}"
    assert (seen["path"], seen["body"], seen["headers"]["X-Test"]) == ("/in", b'{"a":1}', "1")


def test_post_never_follows_a_redirect_to_a_private_address(recorder):
    metadata = recorder()  # stands in for 169.254.169.254
    hop = recorder(status=302, location=f"http://127.0.0.1:{metadata.port}/latest/meta-data/")

    response = outbound.post(
        f"http://127.0.0.1:{hop.port}/x", body=b"{}", headers={}, allow_http=True, allow_private=True
    )

    assert response.status == 302
    assert len(hop.requests) == 1 and metadata.requests == []


def test_post_returns_no_response_body(recorder):
    target = recorder(status=500)

    response = outbound.post(
        f"http://127.0.0.1:{target.port}/x", body=b"{}", headers={}, allow_http=True, allow_private=True
    )

    assert response.status == 500
    assert set(vars(response)) == {"status", "latency_ms", "address"}


def test_post_gives_up_on_a_silent_server_after_the_read_timeout(recorder):
    target = recorder(hang=True)

    with pytest.raises(outbound.RequestFailed) as failed:
        outbound.post(
            f"http://127.0.0.1:{target.port}/x",
            body=b"{}",
            headers={},
            allow_http=True,
            allow_private=True,
            read_timeout=0.2,
        )

    assert failed.value.error_class == "timeout"
    assert 150 <= failed.value.latency_ms < 3000


def test_post_reports_a_refused_connection_as_connect():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(outbound.RequestFailed) as failed:
        outbound.post(
            f"http://127.0.0.1:{port}/x", body=b"{}", headers={}, allow_http=True, allow_private=True
        )

    assert failed.value.error_class == "connect"
