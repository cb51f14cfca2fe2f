"""The exporter-toolkit web configuration file: TLS, basic auth and response headers.

Operators protect Go exporters with one YAML file (``--web.config.file``) that
``promtool check web-config`` validates; ``metrics.web_config_file`` takes the
same file. ``load_web_config`` reads and checks it whole (a missing or
mismatched certificate, a malformed hash, an unknown key or value is a
``ConfigFileError`` naming the file and the key) and returns a ``WebConfig``:
an ``ssl.SSLContext`` (or None), a ``BasicAuth`` (or None) and the headers to
add to every response. A setting Python's ``ssl`` module cannot honour is an
error, never a silently weaker endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import bcrypt
from pydantic import BaseModel, ConfigDict, ValidationError

from bigbrotr.core.config import describe_validation_error
from bigbrotr.core.yaml import ConfigFileError, load_yaml_with_lines

__all__ = ["DEFAULT_HEADERS", "BasicAuth", "WebConfig", "load_web_config"]

#: Sent with every response unless the file sets them otherwise.
DEFAULT_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: Go's names for the TLS 1.2 suites it offers, as OpenSSL names them (TLS 1.3 suites
#: are not configurable in Go either).
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
_CACHE_SIZE = 1024


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_File):
    """``tls_server_config``, with exporter-toolkit's keys and values."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[str] | None = None
    prefer_server_cipher_suites: bool | None = None
    curve_preferences: list[str] | None = None


class HTTPServerConfig(_File):
    """``http_server_config``: extra headers (HTTP/2 is not served, so ``http2`` is moot)."""

    headers: dict[str, str] = {}
    http2: bool | None = None


class WebConfigFile(_File):
    """The whole file, as exporter-toolkit reads it."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, without a timing oracle.

    An unknown user costs a bcrypt check against a dummy hash of the same cost
    as the real ones, so timing says nothing about which names exist. A
    successful check is remembered under a keyed digest of (user, password,
    stored hash): a changed hash, or another password, never matches the
    memory, and the password itself is never kept. A failed check is remembered
    the same way, so a flood repeating wrong credentials costs one bcrypt, not
    one per request. Building one runs no bcrypt
    (an unknown user's password is hashed with a salt of the real cost, made
    here without hashing), so a web config can be loaded anywhere.
    """

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = users
        cost = max((int(stored.split(b"$")[2]) for stored in users.values()), default=10)
        self._salt = bcrypt.gensalt(rounds=cost)
        self._secret = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, header: str | None) -> bool | None:
        """Whether ``header`` passed (True) or failed (False) before; None if not checked yet.

        Cheap: call it anywhere, even on a loop.
        """
        key = self._key(header)
        if key is None:
            return False  # no credentials, or malformed: no check could pass
        with self._lock:
            for memory, verdict in ((self._cache, True), (self._refused, False)):
                if key in memory:
                    memory.move_to_end(key)
                    return verdict
        return None

    def same_users(self, other: BasicAuth) -> bool:
        """Whether ``other`` has exactly these users and hashes (its memory would hold here)."""
        return self._users == other._users

    def cached(self, header: str | None) -> bool:
        """Whether ``header`` already passed (cheap: call it anywhere, even on a loop)."""
        return self.known(header) is True

    def check(self, header: str | None) -> bool:
        """Whether ``header`` carries a known user and their password (runs bcrypt: blocking)."""
        credentials = _credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        # bcrypt reads 72 bytes (Go's and bcrypt 4 compare those); bcrypt 5 raises past them
        secret = password.encode()[:_BCRYPT_MAX_BYTES]
        stored = self._users.get(user)
        if stored is None:
            bcrypt.hashpw(secret, self._salt)  # as long as a real check
            matched = False
        else:
            matched = bcrypt.checkpw(secret, stored)
        key = self._key(header)
        assert key is not None
        memory = self._cache if matched else self._refused
        with self._lock:
            memory[key] = None
            while len(memory) > _CACHE_SIZE:
                memory.popitem(last=False)
        return matched

    def _key(self, header: str | None) -> bytes | None:
        credentials = _credentials(header)
        if credentials is None:
            return None
        user, password = credentials
        stored = self._users.get(user, b"")  # an unknown user's failures are remembered too
        material = b"\0".join((user.encode(), password.encode(), stored))
        return hmac.digest(self._secret, material, hashlib.sha256)


def _credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None if malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@dataclass(frozen=True)
class WebConfig:
    """What the server needs from the file: TLS, auth and headers, all checked.

    Attributes:
        ssl_context: For the listener, or None for plain HTTP.
        auth: The basic-auth check, or None for none.
        headers: Added to every response.
        tls: The file's TLS settings, so a re-read file can be applied to the
            listener's context (``rotate_into``).
        source: The file.
    """

    ssl_context: ssl.SSLContext | None = None
    auth: BasicAuth | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_HEADERS))
    tls: TLSServerConfig | None = None
    source: str = ""

    def remembering(self, running: WebConfig) -> WebConfig:
        """This config, with ``running``'s basic auth (and its memory) when the users are unchanged.

        A reload (SIGHUP, certificate rotation) then keeps every client's
        remembered check: Prometheus' next scrape costs no bcrypt, even under a
        flood of wrong passwords. Changed users or hashes start afresh.
        """
        kept = running.auth
        if self.auth is not None and kept is not None and self.auth.same_users(kept):
            return replace(self, auth=kept)
        return self

    def rotate_into(self, live: ssl.SSLContext) -> None:
        """Apply this file's TLS settings to the listener's context, for new handshakes.

        A listening socket keeps the context it was made with, so rotating
        certificates changes that context in place. (Client CAs can be added
        this way, not removed: removing one needs a restart.)
        """
        assert self.tls is not None
        _configure(live, self.source, self.tls)


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check an exporter-toolkit web configuration file.

    Raises:
        ConfigFileError: For anything wrong in it, naming the file and the key.
        FileNotFoundError: If the file does not exist.
    """
    if Path(path).is_dir():
        raise ConfigFileError(f"{path}: a directory, not a web config file")
    if Path(path).exists() and not Path(path).is_file():  # a pipe blocks, cannot be re-read
        raise ConfigFileError(f"{path}: not a regular file (a web config is re-read on SIGHUP)")
    data, lines = load_yaml_with_lines(path)
    try:
        parsed = WebConfigFile.model_validate(data)
    except ValidationError as exc:
        message = describe_validation_error(exc, model=WebConfigFile, lines=lines)
        raise ConfigFileError(f"{path}: {message}") from None
    headers = dict(DEFAULT_HEADERS)
    if parsed.http_server_config is not None:
        headers.update(parsed.http_server_config.headers)
    tls = parsed.tls_server_config
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _configure(context, str(path), tls)
    auth = _basic_auth(path, parsed.basic_auth_users) if parsed.basic_auth_users else None
    return WebConfig(context, auth, headers, tls, str(path))


def _configure(context: ssl.SSLContext, path: str, tls: TLSServerConfig) -> None:
    """Set ``context`` up as ``tls`` says (a new context, or the listener's on rotation)."""

    def fail(key: str, problem: str) -> ConfigFileError:
        return ConfigFileError(f"{path}: field 'tls_server_config.{key}': {problem}")

    base = Path(path).parent
    for key in ("cert_file", "key_file"):
        file = base / getattr(tls, key)
        if not file.is_file():
            raise fail(key, f"cannot read {file}")
    try:
        context.load_cert_chain(base / tls.cert_file, base / tls.key_file)
    except ssl.SSLError as exc:
        raise fail("key_file", f"does not match cert_file or is not a key ({exc.reason})") from None
    try:
        context.minimum_version = _VERSIONS[tls.min_version]
        context.maximum_version = _VERSIONS[tls.max_version]
    except (ValueError, ssl.SSLError) as exc:
        raise fail("min_version", f"this Python's ssl cannot use it ({exc})") from None
    if context.minimum_version > context.maximum_version:
        raise fail("min_version", f"{tls.min_version} is above max_version {tls.max_version}")
    if tls.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
        raise fail(
            "client_auth_type",
            f"{tls.client_auth_type} (a client certificate taken without verifying it) cannot be "
            "honoured by Python's ssl module; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file",
        )
    if tls.client_auth_type != "NoClientCert":
        if tls.client_ca_file is None:
            raise fail("client_ca_file", f"required with client_auth_type {tls.client_auth_type}")
        ca_file = base / tls.client_ca_file
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise fail("client_ca_file", f"cannot read {ca_file} ({exc})") from None
        required = tls.client_auth_type == "RequireAndVerifyClientCert"
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    if tls.cipher_suites:
        unknown = [suite for suite in tls.cipher_suites if suite not in _CIPHERS]
        if unknown:
            raise fail("cipher_suites", f"not a TLS 1.2 suite Go offers: {', '.join(unknown)}")
        context.set_ciphers(":".join(_CIPHERS[suite] for suite in tls.cipher_suites))
    if tls.curve_preferences:
        raise fail("curve_preferences", "cannot be honoured by Python's ssl module")


#: bcrypt reads at most this many bytes of a password; the rest is ignored, as by Go's.
_BCRYPT_MAX_BYTES = 72
_BCRYPT = re.compile(r"\$2[abxy]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


#: The highest bcrypt cost accepted: each check doubles per step (cost 15 takes about
#: 2 s here), and a higher one would make every new client wait, or hang a start.
MAX_BCRYPT_COST = 15


def _basic_auth(path: str | Path, users: dict[str, str]) -> BasicAuth:
    for user, stored in users.items():
        where = f"{path}: field 'basic_auth_users.{user}'"
        if not _BCRYPT.fullmatch(stored):
            raise ConfigFileError(f"{where}: not a bcrypt hash")
        if (cost := int(stored.split("$")[2])) > MAX_BCRYPT_COST:
            raise ConfigFileError(
                f"{where}: bcrypt cost {cost} is over {MAX_BCRYPT_COST} "
                "(each check would take minutes or more); hash it again with a lower cost"
            )
    return BasicAuth({user: stored.encode() for user, stored in users.items()})
