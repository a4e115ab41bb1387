"""Key pairs, a JWKS served over real loopback HTTP, and hand-made tokens."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from jose import jwk, jwt

ISSUER = "https://auth.example.test"
AUDIENCE = "taskvault-api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class KeyPair:
    kid: str
    algorithm: str
    private_pem: bytes
    public_jwk: dict[str, Any]
    public_pem: bytes

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, **header}
        return jwt.encode(
            claims, self.private_pem.decode(), algorithm=self.algorithm, headers=headers
        )


def rsa_pair(kid: str, algorithm: str = "RS256") -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pair(kid, algorithm, private)


def ec_pair(kid: str, algorithm: str = "ES256") -> KeyPair:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[algorithm]
    return _pair(kid, algorithm, ec.generate_private_key(curve))


def _pair(kid: str, algorithm: str, private: Any) -> KeyPair:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_jwk = jwk.construct(public_pem.decode(), algorithm).to_dict()
    public_jwk.update({"kid": kid, "use": "sig"})
    return KeyPair(kid, algorithm, private_pem, public_jwk, public_pem)


def claims(sub: Any = "alice", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(body).encode()), b64(signature)]
    )


def eddsa_token(body: dict[str, Any], kid: str = "ed") -> tuple[str, dict[str, Any]]:
    """An Ed25519-signed token and its public JWK (python-jose cannot make these)."""
    private = ed25519.Ed25519PrivateKey.generate()
    header = {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = private.sign(signing_input.encode())
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return f"{signing_input}.{b64(signature)}", {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64(raw),
        "kid": kid,
    }


def ps256_token(pair: KeyPair, body: dict[str, Any]) -> str:
    """A PS256 token signed with ``pair``'s RSA key (python-jose cannot verify PS*)."""
    private = serialization.load_pem_private_key(pair.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    header = {"alg": "PS256", "typ": "JWT", "kid": pair.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = private.sign(
        signing_input.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    return f"{signing_input}.{b64(signature)}"


@dataclass
class JwksServer:
    """Serves ``document`` at ``url`` and counts the fetches."""

    url: str = ""
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    fetches: int = 0
    status: int = 200
    delay_s: float = 0.0


def serve_jwks() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            if state.delay_s:
                time.sleep(state.delay_s)
            body = json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
