"""Real receivers on loopback for the alert tests: an HTTP server that records every
request (and can refuse or hang on command) and an SMTP server (aiosmtpd) that wants
STARTTLS with a real certificate and a login.

Nothing is mocked: Partnerboard's senders open real sockets to these, speak real HTTP
and real SMTP, verify a real certificate (a CA file made per test run).
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests import ports


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Records each POST; answers with the next of ``answers`` (status codes), 200 after.
    ``hang`` set: each request is held (recorded first) until ``release`` is called."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    hang: threading.Event = field(default_factory=threading.Event)
    # A refusal echoes what it was sent to, as some services do: the path JSON-escaped
    # (``\/``) and its last segment bare.
    echo: bool = False
    _released: threading.Event = field(default_factory=threading.Event)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def release(self) -> None:
        self.hang.clear()
        self._released.set()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 60.0) -> list[Received]:
        """Wait until ``predicate(requests)`` holds (woken by each request), or fail."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout} s; got "
                                         f"{[r.path for r in self.requests]}")
                self._cond.wait(left)
            return list(self.requests)

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def start_http_receiver() -> HttpReceiver:
    holder: dict[str, HttpReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            r = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with r._cond:
                r.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                           time.time()))
                status = r.answers.pop(0) if r.answers else 200
                r._cond.notify_all()
            if r.hang.is_set():
                r._released.wait(120)
                return  # the sender may be gone; answer nothing
            payload = b"ok" if status < 300 else b'{"error":"receiver is down"}'
            if status >= 300 and r.echo:
                last = self.path.split("?")[0].rsplit("/", 1)[-1]
                payload = ('{"error":"no route ' + self.path.replace("/", "\\/") + '","token":"' + last
                           + '"}').encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            if status in (429, 503):
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = receiver = HttpReceiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: (certificate = CA file, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class SmtpReceiver:
    controller: Any
    port: int
    ca_file: Path
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"smtp: {len(self.messages)} of {count} messages in {timeout} s")
                self._cond.wait(left)
            return list(self.messages)

    def stop(self) -> None:
        self.controller.stop()


def start_smtp_receiver(directory: Path, *, username: str, password: str) -> SmtpReceiver:
    """aiosmtpd on loopback: STARTTLS required (certificate in ``directory``), AUTH
    required with exactly ``username``/``password``."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = make_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    holder: dict[str, SmtpReceiver] = {}

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            r = holder["r"]
            mail = message_from_bytes(envelope.content, policy=policy.default)
            with r._cond:
                r.messages.append(mail)  # type: ignore[arg-type]
                r._cond.notify_all()
            return "250 Message accepted for delivery"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == username and \
            data.password.decode() == password
        if ok:
            holder["r"].logins.append(username)
        return AuthResult(success=ok)

    port = ports.free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, auth_required=True, authenticator=authenticator,
                            server_hostname="127.0.0.1")
    controller.start()
    holder["r"] = receiver = SmtpReceiver(controller, port, cert)
    return receiver
