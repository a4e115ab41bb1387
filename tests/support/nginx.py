"""Debian's nginx in front of taskvault instances, run by a test in a folder of its own.

The site (``site_config``) is the one ``docs/operations.md`` shows an operator:
TLS at the proxy, the public scheme and host in ``X-Forwarded-Proto`` and
``X-Forwarded-Host``, keep-alive to the instances, and ``proxy_next_upstream``
for the requests nginx may send again. The rest of the configuration only keeps
nginx inside the folder: its pid, logs and temporary files, in the foreground.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.processes import LOOPBACK, ServerProcess, free_port

HOW_TO_RUN_NGINX = (
    "the nginx tests need Debian's nginx (apt-get install nginx; .ci/run installs it); "
    "they start their own, on a free loopback port"
)

_ACCESS_LOG_FORMAT = (
    '{"time":$msec,"request_id":"$rid","method":"$request_method","uri":"$request_uri",'
    '"status":$status,"upstream":"$upstream_addr","upstream_status":"$upstream_status"}'
)


def find_nginx() -> str | None:
    """nginx on PATH, or where Debian puts it (/usr/sbin is not on every user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "proxy.crt", folder / "proxy.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def site_config(
    *, listen: str, upstreams: Sequence[str], certificate: Path, key: Path, access_log: str
) -> str:
    """The upstream and the server, as an operator writes them."""
    servers = "".join(
        f"    server {address} max_fails=1 fail_timeout=10s;\n" for address in upstreams
    )
    return f"""\
upstream taskvault {{
{servers}    keepalive 32;
}}

server {{
    listen {listen} ssl;
    ssl_certificate     {certificate};
    ssl_certificate_key {key};
    access_log {access_log};

    # taskvault refuses bodies over 64 KiB itself (413 problem+json).
    client_max_body_size 128k;

    location / {{
        proxy_pass http://taskvault;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        set $rid $http_x_request_id;
        if ($rid = "") {{ set $rid $request_id; }}
        proxy_set_header X-Request-ID $rid;

        proxy_connect_timeout 2s;
        proxy_read_timeout 30s;
        # Another instance when one refuses, resets or times out. nginx sends a
        # POST or PATCH again only if it never reached the instance; one cut
        # mid-flight is a 502, which the client retries (Idempotency-Key).
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 3;
        proxy_next_upstream_timeout 10s;
    }}
}}
"""


def _main_config(prefix: Path, site: str) -> str:
    # As root, nginx's workers would run as nobody, who cannot enter a test's folder.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
{user}daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;

events {{ worker_connections 512; }}

http {{
    log_format taskvault escape=json '{_ACCESS_LOG_FORMAT}';
{temp}

{site}}}
"""


class Nginx(ServerProcess):
    """``nginx`` in the foreground with its configuration in ``folder``, serving TLS on a
    free loopback port and proxying to ``upstreams`` (``host:port``); ready once
    ``/healthz`` answers 200 through it."""

    def __init__(self, binary: str, folder: Path, upstreams: Sequence[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "temp").mkdir(exist_ok=True)
        port = free_port()
        self.certificate, key = self_signed_certificate(folder)
        self.access_log = folder / "access.log"
        self.public = f"https://{LOOPBACK}:{port}"
        site = site_config(
            listen=f"{LOOPBACK}:{port}",
            upstreams=upstreams,
            certificate=self.certificate,
            key=key,
            access_log=f"{self.access_log} taskvault",
        )
        config = folder / "nginx.conf"
        config.write_text(_main_config(folder, site))
        super().__init__(
            [binary, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
            cwd=folder,
            env=dict(os.environ),
            ready=self._answers(),
            log=folder / "nginx.log",
            port=port,
        )
        self.base = self.public

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts this proxy's certificate only."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def _answers(self) -> Callable[[], bool]:
        def check() -> bool:
            try:
                with httpx.Client(verify=self.tls(), timeout=1) as client:
                    return client.get(f"{self.public}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        return check

    def access_records(self) -> list[dict[str, object]]:
        """The access log: one JSON object per request nginx answered."""
        if not self.access_log.exists():
            return []
        records = []
        for line in self.access_log.read_text().splitlines():
            record = orjson.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
        return records

    def error_log(self) -> str:
        path = self.cwd / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""
