"""``soiree up --secure``: a local Kafka and Redis locked down as in production.

* Kafka takes clients only on a SASL_SSL listener: TLS with a certificate for localhost and
  127.0.0.1 signed by a local CA made here, then SCRAM-SHA-512. The KRaft controller listener
  (loopback) takes SASL/PLAIN, so nothing on the host reaches Kafka without a password. The
  ``StandardAuthorizer`` denies whatever no ACL allows (``allow.everyone.if.no.acl.found=false``);
  ``admin`` is the super user (the broker's own identity too, and what ``up`` uses to create the
  topics and ACLs). ``PRINCIPALS`` says what each principal may do (``acls``).
* Redis has ACL users of the same names with the same passwords; ``default`` is disabled.
* Every password is random, made once and kept only in ``$SOIREE_HOME/secure/<principal>.env``
  (mode 0600, with the addresses and the CA: source one to be that principal). Redis's
  configuration holds their SHA-256, not the passwords; the broker's holds ``admin``'s (mode 0600).
* The stack lives apart from the plain one (``$SOIREE_HOME/secure``: data, configuration, logs,
  pid files), on the configured ports, which must be free: it never takes over the plain stack's.
  The jars are shared (``$SOIREE_HOME/kafka-<version>``).

Idempotent: the CA, certificates, passwords and formatted storage are reused; a running stack
is left running (its ACLs are applied again, which adds those of a new ``SOIREE_APP_ID``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiokafka.protocol.admin import CreateAclsRequest
from pydantic import SecretStr
from rich.console import Console

from stream.devstack.services import (
    _LOCAL_HOSTS,
    _LOG4J2,
    CLUSTER_ID,
    KAFKA_HEAP,
    KAFKA_START_TIMEOUT,
    REDIS_START_TIMEOUT,
    ServiceStatus,
    _check_java,
    _home,
    _kafka_endpoint,
    _log_file,
    _pid_file,
    _port_open,
    _read_pid,
    _recv_exact,
    _spawn,
    _stop,
    _wait_started,
    ensure_kafka_jars,
    kafka_answers,
    redis_answers,
)
from stream.devstack.services import (
    _redis_conf as _plain_redis_conf,
)
from stream.errors import InfraError
from stream.settings import Settings

__all__ = ["PRINCIPALS", "Acl", "acls", "down", "env_file", "read_env_file", "secure_dir", "up"]

#: The principals, each with a Kafka SCRAM user and a Redis ACL user of that name.
PRINCIPALS = ("admin", "worker", "ingest", "reader")
MECHANISM = "SCRAM-SHA-512"
#: Redis ACL rules by principal (the password, ``#<sha256>``, goes in front).
REDIS_RULES = {
    "admin": "~* &* +@all",
    # a worker reads and writes Soirée's keys (definitions, tables, standings, markers) with scripts
    # and transactions; nothing that reaches the server's configuration or other keys
    "worker": "resetkeys ~soiree:* resetchannels +@all -@dangerous -@admin",
    # `soiree serve`, `soiree results`; `soiree ingest` checks reports against what is applied
    "reader": "resetkeys %R~soiree:* resetchannels -@all +@read +@connection -@dangerous",
    "ingest": "resetkeys %R~soiree:* resetchannels -@all +@read +@connection -@dangerous",
}
#: What each env file lets you run (printed by ``up``).
USES = {
    "worker": "soiree worker, soiree election create",
    "ingest": "soiree ingest",
    "reader": "soiree serve, soiree results, soiree tail",
    "admin": "super user: topics, ACLs, anything",
}
CA_DAYS = 3650
CERT_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
CONFIGURE_TIMEOUT = 60.0  # seconds for the first authenticated admin connection after the start

# --------------------------------------------------------------------------- ACLs

# Kafka's protocol codes (org.apache.kafka.common.resource / acl)
_TOPIC, _GROUP = 2, 3
_LITERAL, _PREFIXED = 3, 4
_OPERATIONS = {
    "READ": 3,
    "WRITE": 4,
    "CREATE": 5,
    "DESCRIBE": 8,
    "DESCRIBE_CONFIGS": 10,
}
_ALLOW = 3


@dataclass(frozen=True)
class Acl:
    principal: str
    resource: str  # "topic" | "group"
    name: str
    operation: str
    prefixed: bool = False

    def describe(self) -> str:
        pattern = "prefix " if self.prefixed else ""
        return f"{self.principal}: {self.operation} {self.resource} {pattern}{self.name}"

    def creation(self) -> tuple[int, str, int, str, str, int, int]:
        """A CreateAcls (v1+) creation: resource type, name, pattern type, principal, host, op, permission."""
        return (
            _TOPIC if self.resource == "topic" else _GROUP,
            self.name,
            _PREFIXED if self.prefixed else _LITERAL,
            f"User:{self.principal}",
            "*",
            _OPERATIONS[self.operation],
            _ALLOW,
        )


def acls(settings: Settings) -> list[Acl]:
    """Every ACL of the secure stack, for the topic names and app id of ``settings``.

    * ``ingest`` publishes reports and turnout, and (``soiree ingest``) the invalid lines it
      finds to the dead letters; it reads nothing.
    * ``worker`` reads the inputs and the definitions, writes the events, the dead letters and
      the definitions (``soiree election create``), may create and describe every topic Soirée
      makes and read its configuration (``ensure_topics`` checks its ``min.insync.replicas``),
      and owns every topic and consumer group whose name starts with its app id (internal
      topics, the table's changelog, Faust's leader topic).
    * ``reader`` reads the events (and the dead letters: ``soiree serve`` counts them for its
      metrics), and may describe and read any consumer group (``/readyz`` counts the workers).
    """
    from stream.adapters.kafka.topics import topic_partitions

    s = settings
    out: list[Acl] = []

    def allow(principal: str, resource: str, name: str, *ops: str, prefixed: bool = False) -> None:
        out.extend(Acl(principal, resource, name, op, prefixed) for op in ops)

    for topic in (s.results_topic, s.turnout_topic, s.rejected_topic):
        allow("ingest", "topic", topic, "WRITE", "DESCRIBE")
    for topic in topic_partitions(s):  # `soiree worker` makes sure every topic exists
        if not topic.startswith(s.app_id):
            allow("worker", "topic", topic, "DESCRIBE", "DESCRIBE_CONFIGS", "CREATE")
    for topic in (s.results_topic, s.turnout_topic):
        allow("worker", "topic", topic, "READ")
    for topic in (s.updates_topic, s.rejected_topic):
        allow("worker", "topic", topic, "WRITE")
    allow("worker", "topic", s.elections_topic, "READ", "WRITE")
    allow(
        "worker", "topic", s.app_id, "READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", prefixed=True
    )
    allow("worker", "group", s.app_id, "READ", "DESCRIBE", prefixed=True)
    for topic in (s.updates_topic, s.rejected_topic):
        allow("reader", "topic", topic, "READ", "DESCRIBE")
    allow("reader", "group", "*", "READ", "DESCRIBE")
    return out


# --------------------------------------------------------------------------- files


def secure_dir(settings: Settings) -> Path:
    """Where the secure stack keeps everything: ``$SOIREE_HOME/secure``."""
    return _home(settings) / "secure"


def env_file(settings: Settings, principal: str) -> Path:
    return secure_dir(settings) / f"{principal}.env"


def _stack_settings(settings: Settings) -> Settings:
    """``settings`` with ``home`` moved into the secure directory: the pid files, logs and data of
    ``services`` then land there, apart from the plain stack's."""
    return settings.model_copy(update={"home": secure_dir(settings)})


def _private(path: Path, text: str | bytes) -> None:
    """Write ``path`` readable by its owner only (created so: never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
    path.chmod(0o600)


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of an env file (``export`` prefix allowed, comments skipped)."""
    found: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            found[key.strip()] = value.strip().strip("'\"")
    return found


def _passwords(settings: Settings, formatted: bool) -> dict[str, str]:
    """Each principal's password: the one in its env file, else a new one.

    A broker formatted with passwords whose files are gone cannot be used (its SCRAM users
    are in its metadata log): say so rather than make new passwords it would refuse.
    """
    known = {
        p: read_env_file(env_file(settings, p)).get("SOIREE_KAFKA_SASL_PASSWORD", "") for p in PRINCIPALS
    }
    lost = [p for p, password in known.items() if not password]
    if formatted and lost:
        data = secure_dir(settings) / "kafka-data"
        raise InfraError(
            f"the secure broker's data ({data}) has users whose passwords are gone "
            f"({', '.join(env_file(settings, p).name for p in lost)} missing); `soiree down`, then "
            f"delete {data} to start over with new passwords"
        )
    return {p: known[p] or secrets.token_urlsafe(24) for p in PRINCIPALS}


def _write_env_files(settings: Settings, passwords: dict[str, str], redis_host: str, redis_port: int) -> None:
    directory = secure_dir(settings)
    for principal in PRINCIPALS:
        password = passwords[principal]
        values = {
            "SOIREE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "SOIREE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SOIREE_KAFKA_SASL_MECHANISM": MECHANISM,
            "SOIREE_KAFKA_SASL_USERNAME": principal,
            "SOIREE_KAFKA_SASL_PASSWORD": password,
            "SOIREE_KAFKA_SSL_CAFILE": str(directory / "ca.pem"),
            "SOIREE_REDIS_URL": f"redis://{principal}:{password}@{redis_host}:{redis_port}/0",
            # so that `soiree up --secure` and `soiree down` find this stack again
            "SOIREE_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
            "SOIREE_HOME": str(_home(settings)),
            "SOIREE_APP_ID": settings.app_id,  # the ACLs are for this app id
        }
        text = (
            f"# soiree up --secure: the {principal!r} principal ({USES[principal]}).\n"
            f"# Secret (mode 0600). Use it with:  source {env_file(settings, principal)}\n"
            + "".join(f"export {key}={value}\n" for key, value in values.items())
        )
        path = env_file(settings, principal)
        if not path.exists() or path.read_text() != text:
            _private(path, text)
        path.chmod(0o600)


def _admin_settings(settings: Settings, passwords: dict[str, str]) -> Settings:
    return settings.model_copy(
        update={
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": "admin",
            "kafka_sasl_password": SecretStr(passwords["admin"]),
            "kafka_ssl_cafile": str(secure_dir(settings) / "ca.pem"),
            "kafka_ssl_certfile": "",
            "kafka_ssl_keyfile": "",
        }
    )


# --------------------------------------------------------------------------- TLS


def _ensure_tls(directory: Path) -> None:
    """A local CA (``ca.pem``, ``ca.key``) and the broker's key and certificate chain for
    localhost, 127.0.0.1 and ::1 (``broker.pem``: PKCS#8 key, certificate, CA), made once; the
    broker's is renewed a month before it expires, or when the CA changed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_pem, ca_key_pem, broker_pem = directory / "ca.pem", directory / "ca.key", directory / "broker.pem"
    now = datetime.datetime.now(datetime.UTC)

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pkcs8(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    fresh_ca = False
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), password=None)
        if ca_cert.not_valid_after_utc - now < RENEW_BEFORE or not isinstance(ca_key, rsa.RSAPrivateKey):
            raise ValueError("CA expiring")
    except (OSError, ValueError):
        ca_key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Soiree local CA (soiree up --secure)")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),  # fmt: skip
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _private(ca_key_pem, pkcs8(ca_key))
        ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        fresh_ca = True

    try:
        current = x509.load_pem_x509_certificate(broker_pem.read_bytes())
        stale = (
            fresh_ca or current.issuer != ca_cert.subject or current.not_valid_after_utc - now < RENEW_BEFORE
        )
    except (OSError, ValueError):
        stale = True
    if not stale:
        return
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    _private(broker_pem, pkcs8(key) + chain)


# --------------------------------------------------------------------------- Kafka


def _jaas(module: str, username: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{name}="{secret}"' for name, secret in users.items())
    return f'{module} required username="{username}" password="{password}"{extra};'


def _kafka_config(settings: Settings, port: int, admin_password: str) -> Path:
    """``server.properties`` (mode 0600: it holds ``admin``'s password for the broker's own
    connections) and ``log4j2.xml``, regenerated at every start."""
    directory = secure_dir(settings)
    conf = directory / "kafka-config"
    conf.mkdir(parents=True, exist_ok=True)
    ctl = settings.kafka_controller_port
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@localhost:{ctl}",
        "listeners": f"SASL_SSL://localhost:{port},CONTROLLER://localhost:{ctl}",
        "advertised.listeners": f"SASL_SSL://localhost:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        # clients: TLS, then SCRAM (its users are in the metadata log, put there at format time)
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _jaas(scram, "admin", admin_password),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(directory / "broker.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(directory / "ca.pem"),
        "ssl.client.auth": "none",
        # the controller, on loopback: PLAIN (SCRAM cannot be used there), one static user
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            plain, "admin", admin_password, admin=admin_password
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": "User:admin",
        "log.dirs": str(directory / "kafka-data"),
        "num.partitions": str(settings.partitions),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": str(max(settings.partitions, 1)),
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    server = conf / "server.properties"
    lines = "".join(f"{key}={value}\n" for key, value in properties.items())
    _private(server, "# written by soiree up --secure at each start (secret: mode 0600)\n" + lines)
    log4j = _LOG4J2.replace("{log}", str(_log_file(_stack_settings(settings), "kafka")))
    (conf / "log4j2.xml").write_text(log4j)
    return server


def _argfile_quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_storage(
    settings: Settings, java: str, libs: Path, server: Path, passwords: dict[str, str]
) -> None:
    """Format the KRaft log dir once, with a SCRAM user per principal.

    The arguments go through a java ``@argfile`` (mode 0600, deleted at once) so that no
    password is ever on a command line (``ps`` shows those to every user)."""
    data = secure_dir(settings) / "kafka-data"
    if (data / "meta.properties").exists():
        return
    scram = [
        arg
        for principal in PRINCIPALS
        for arg in ("--add-scram", f"{MECHANISM}=[name={principal},password={passwords[principal]}]")
    ]
    args = ["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(server), *scram]
    argfile = server.parent / ".format-args"
    _private(argfile, "\n".join(_argfile_quote(arg) for arg in args) + "\n")
    try:
        log4j = server.parent / "log4j2.xml"
        argv = [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*", f"@{argfile}"]
        result = subprocess.run(argv, check=False, capture_output=True, text=True)
    finally:
        argfile.unlink(missing_ok=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        for password in passwords.values():
            output = output.replace(password, "***")
        raise InfraError(f"formatting the secure Kafka storage in {data} failed:\n{output}")


def _api_versions(host: str, port: int, cafile: Path, timeout: float = 2.0) -> bool:
    """True when a TLS connection verified with ``cafile`` gets an ApiVersions answer without
    error (the one request a SASL listener answers before authentication)."""
    context = ssl.create_default_context(cafile=str(cafile))
    client_id = b"soiree-probe"
    correlation = 0x5EC0
    request = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 6 <= size <= 1024 * 1024:
                return False
            got, error = struct.unpack_from(">ih", _recv_exact(sock, size))
    except (OSError, ValueError, struct.error):
        return False
    return got == correlation and error == 0


class _CreateAcls(CreateAclsRequest):
    """CreateAcls with every creation in one request (aiokafka's makes one at a time)."""

    def __init__(self, creations: list[tuple[int, str, int, str, str, int, int]]) -> None:
        self._creations = creations

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION < 1:
            raise InfraError("the broker is too old for prefixed ACLs (CreateAcls v1)")
        return request_struct_class(self._creations)


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence a library's logger (aiokafka logs every refused connection while the broker starts)."""
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        target.setLevel(level)


async def _configure(admin: Settings, wanted: list[Acl]) -> None:
    """As ``admin``: create the ACLs, then the topics (``ensure_topics``)."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    from stream.adapters.kafka.client import client_options
    from stream.adapters.kafka.topics import ensure_topics

    deadline = time.monotonic() + CONFIGURE_TIMEOUT
    while True:
        client = AIOKafkaClient(**client_options(admin), request_timeout_ms=15000)
        try:
            with _quiet("aiokafka"):
                await client.bootstrap()
            break
        except KafkaError as exc:
            await client.close()
            if time.monotonic() > deadline:
                raise InfraError(
                    f"the secure Kafka at {admin.kafka_bootstrap} refused admin's connection for "
                    f"{CONFIGURE_TIMEOUT:.0f}s ({type(exc).__name__}: {exc})"
                ) from None
            await asyncio.sleep(0.5)
    try:
        response = await client.send(
            client.get_random_node(), _CreateAcls([acl.creation() for acl in wanted])
        )
    finally:
        await client.close()
    refused = [
        f"{acl.describe()} ({code}: {message})"
        for acl, (code, message) in zip(wanted, response.creation_responses)
        if code != 0
    ]
    if refused:
        raise InfraError("the secure Kafka refused ACLs: " + "; ".join(refused))
    await ensure_topics(admin)


def _run_async(coroutine: Any) -> Any:
    """Run a coroutine to completion from synchronous code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="soiree-secure") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _start_kafka(settings: Settings, console: Console | None, passwords: dict[str, str]) -> ServiceStatus:
    stack = _stack_settings(settings)
    directory = secure_dir(settings)
    address = settings.kafka_bootstrap
    host, port = _kafka_endpoint(settings)
    cafile = directory / "ca.pem"

    def ready() -> bool:
        return _api_versions(host or "localhost", port, cafile)

    pid = _read_pid(stack, "kafka")
    if pid is not None:
        running = _addresses(settings).get("kafka")
        if running and running != address:
            raise InfraError(
                f"the secure Kafka already runs at {running} (pid {pid}), not {address}: "
                f"run `soiree down` first, or use SOIREE_KAFKA_BOOTSTRAP={running}"
            )
        _wait_started(stack, "kafka", pid, ready, KAFKA_START_TIMEOUT)
        return ServiceStatus("kafka", address, "already running", f"SASL_SSL, started by soiree, pid {pid}")
    if host not in _LOCAL_HOSTS:
        raise InfraError(f"the secure stack runs Kafka locally; SOIREE_KAFKA_BOOTSTRAP is {address}")
    if _port_open(host, port):
        plain = " (a plaintext Kafka: the plain stack of `soiree up`?)" if kafka_answers(address) else ""
        raise InfraError(
            f"port {port} is in use{plain}; the secure stack needs ports of its own: set "
            f"SOIREE_KAFKA_BOOTSTRAP, SOIREE_KAFKA_CONTROLLER_PORT and SOIREE_REDIS_URL to free ones "
            f"(e.g. localhost:19092, 19093, redis://localhost:16379/0)"
        )
    if _port_open("localhost", settings.kafka_controller_port):
        raise InfraError(
            f"the KRaft controller port {settings.kafka_controller_port} is already in use; "
            f"set SOIREE_KAFKA_CONTROLLER_PORT to a free one"
        )
    java = _check_java()
    libs = ensure_kafka_jars(settings, console)  # shared with the plain stack
    server = _kafka_config(settings, port, passwords["admin"])
    _format_storage(settings, java, libs, server, passwords)
    log4j = server.parent / "log4j2.xml"
    argv = [
        java, KAFKA_HEAP, "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={directory / 'logs'}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(server),
    ]  # fmt: skip
    status = console.status(f"Starting the secure Kafka on localhost:{port}…") if console else None
    with status or contextlib.nullcontext():
        pid = _spawn(stack, "kafka", argv, cwd=directory)
        waited = _wait_started(stack, "kafka", pid, ready, KAFKA_START_TIMEOUT)
    detail = f"SASL_SSL, pid {pid}, ready in {waited:.1f}s, log {_log_file(stack, 'kafka')}"
    return ServiceStatus("kafka", address, "started", detail)


# --------------------------------------------------------------------------- Redis


def _redis_endpoint(settings: Settings) -> tuple[str, int]:
    parts = urlsplit(settings.redis_dsn())
    if parts.scheme != "redis":
        raise InfraError(
            f"the secure stack runs Redis locally (redis://); SOIREE_REDIS_URL is {settings.redis_display()}"
        )
    host = parts.hostname or "localhost"
    if host not in _LOCAL_HOSTS:
        raise InfraError(
            f"the secure stack runs Redis locally; SOIREE_REDIS_URL is {settings.redis_display()}"
        )
    return host, parts.port or 6379


def _redis_conf(settings: Settings, host: str, port: int, passwords: dict[str, str]) -> Path:
    """``services``' redis.conf plus the ACL users (their passwords as SHA-256 only)."""
    conf = _plain_redis_conf(_stack_settings(settings), host, port, None, None)
    users = ["user default off resetkeys -@all"]
    for principal in PRINCIPALS:
        digest = hashlib.sha256(passwords[principal].encode()).hexdigest()
        users.append(f"user {principal} on #{digest} {REDIS_RULES[principal]}")
    with conf.open("a") as handle:
        handle.write("# ACL users of soiree up --secure (passwords in $SOIREE_HOME/secure/*.env)\n")
        handle.write("\n".join(users) + "\n")
    return conf


def _start_redis(settings: Settings, console: Console | None, passwords: dict[str, str]) -> ServiceStatus:
    stack = _stack_settings(settings)
    host, port = _redis_endpoint(settings)
    address = f"redis://{host}:{port}/0"
    url = f"redis://admin:{passwords['admin']}@{host}:{port}/0"
    pid = _read_pid(stack, "redis")
    if pid is not None:
        running = _addresses(settings).get("redis")
        if running and running != address:
            raise InfraError(
                f"the secure Redis already runs at {running} (pid {pid}), not {address}: "
                f"run `soiree down` first, or set SOIREE_REDIS_URL to it"
            )
        _wait_started(stack, "redis", pid, lambda: redis_answers(url), REDIS_START_TIMEOUT)
        return ServiceStatus("redis", address, "already running", f"ACL users, started by soiree, pid {pid}")
    if _port_open(host, port):
        raise InfraError(
            f"port {port} is in use (the plain stack's Redis?); the secure stack needs its own: "
            f"set SOIREE_REDIS_URL to a free port (e.g. redis://localhost:16379/0)"
        )
    server = shutil.which("redis-server")
    if server is None:
        raise InfraError("`redis-server` not found on PATH. Install it: apt-get install -y redis-server")
    conf = _redis_conf(settings, host, port, passwords)
    status = console.status(f"Starting the secure Redis on localhost:{port}…") if console else None
    with status or contextlib.nullcontext():
        pid = _spawn(stack, "redis", [server, str(conf)], cwd=conf.parent)
        waited = _wait_started(stack, "redis", pid, lambda: redis_answers(url), REDIS_START_TIMEOUT)
    detail = f"ACL users, pid {pid}, ready in {waited:.1f}s, log {_log_file(stack, 'redis')}"
    return ServiceStatus("redis", address, "started", detail)


# --------------------------------------------------------------------------- API


def _addresses_file(settings: Settings) -> Path:
    return secure_dir(settings) / "run" / "addresses.json"


def _addresses(settings: Settings) -> dict[str, str]:
    try:
        found = json.loads(_addresses_file(settings).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _save_address(settings: Settings, service: str, address: str) -> None:
    found = _addresses(settings)
    found[service] = address
    path = _addresses_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found) + "\n")


_KAFKA_SECURITY = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
)


def up(settings: Settings, console: Console | None = None) -> list[ServiceStatus]:
    """Start (or find running) the secure Kafka and Redis, apply the ACLs and create the topics
    as ``admin``; write the env files. Called by ``services.up(..., secure=True)`` under its lock.

    Afterwards ``settings`` is ``admin``'s (SASL_SSL, its password, the CA, its Redis URL), so that
    what the caller does next on the stack (``soiree up`` makes sure of the topics) works."""
    directory = secure_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    formatted = (directory / "kafka-data" / "meta.properties").exists()
    kept = all(env_file(settings, p).exists() for p in PRINCIPALS)
    passwords = _passwords(settings, formatted)
    redis_host, redis_port = _redis_endpoint(settings)
    _write_env_files(settings, passwords, redis_host, redis_port)  # before the broker: never a lost password
    _ensure_tls(directory)
    statuses = [_start_kafka(settings, console, passwords)]
    _save_address(settings, "kafka", settings.kafka_bootstrap)
    admin = _admin_settings(settings, passwords)
    status = console.status("Applying the ACLs and creating the topics as admin…") if console else None
    wanted = acls(settings)
    with status or contextlib.nullcontext():
        _run_async(_configure(admin, wanted))
    kafka = statuses[0]
    kafka.detail += f", {len(wanted)} ACLs for ingest, worker, reader (app id {settings.app_id})"
    statuses.append(_start_redis(settings, console, passwords))
    _save_address(settings, "redis", statuses[-1].address)
    files = ", ".join(f"{p}.env ({USES[p]})" for p in ("worker", "ingest", "reader", "admin"))
    state = "kept" if kept else "written"
    statuses.append(ServiceStatus("credentials", str(directory), state, f"(mode 0600): {files}"))
    if console is not None:
        console.print(
            "Secure stack: passwords are only in the env files (never printed). Source one to act as "
            f"that principal, e.g.  [bold]source {env_file(settings, 'worker')} && soiree worker[/]"
        )
    for field in _KAFKA_SECURITY:
        setattr(settings, field, getattr(admin, field))
    settings.redis_url = SecretStr(f"redis://admin:{passwords['admin']}@{redis_host}:{redis_port}/0")
    return statuses


def down(settings: Settings, console: Console | None = None) -> list[ServiceStatus]:
    """Stop the secure Redis and Kafka if ``up`` started them (pid files in ``secure/run``); called
    by ``services.down`` under its lock. Nothing at all when there never was a secure stack."""
    stack = _stack_settings(settings)
    if not (secure_dir(settings) / "run").is_dir():
        return []
    addresses = _addresses(settings)
    statuses: list[ServiceStatus] = []
    for name in ("redis", "kafka"):
        had_file = _pid_file(stack, name).exists()
        pid = _read_pid(stack, name)
        address = addresses.get(name, "")
        if pid is None:
            if had_file:
                statuses.append(
                    ServiceStatus(f"secure {name}", address, "not running", "stale pid file removed")
                )
            continue
        status = console.status(f"Stopping the secure {name} (pid {pid})…") if console else None
        with status or contextlib.nullcontext():
            how = _stop(stack, name, pid)
        statuses.append(ServiceStatus(f"secure {name}", address, "stopped", f"pid {pid}, {how}"))
    return statuses
