"""Redis beyond one plain instance, for tests: a TLS redis-server with a CA and certificates generated on the spot,
and a master + replica + sentinel trio. Every process started here is stopped by `stop()`."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.stack import free_port, require_binary, wait_for

NO_RETRY = Retry(NoBackoff(), 0)  # redis-py's default retries a refused connection for seconds


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost and a client certificate, both signed by it."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_tls_files(directory: Path) -> TlsFiles:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("nanoedit test CA")).issuer_name(_name("nanoedit test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca=directory / "ca.pem", server_cert=directory / "server.pem", server_key=directory / "server.key",
                     client_cert=directory / "client.pem", client_key=directory / "client.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert, key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                     [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    files.server_cert.write_bytes(cert)
    files.server_key.write_bytes(key)
    cert, key = leaf("nanoedit", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    files.client_cert.write_bytes(cert)
    files.client_key.write_bytes(key)
    return files


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([require_binary("redis-server"), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


_COMMON = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]


class TlsRedisServer:
    """redis-server listening on TLS only (no plain port), requiring a client certificate signed by the CA."""

    def __init__(self, directory: Path) -> None:
        self.files = make_tls_files(directory)
        self.port = free_port()
        f = self.files
        self.proc = _start([*_COMMON, "--port", "0", "--tls-port", str(self.port), "--dir", str(directory),
                            "--tls-cert-file", str(f.server_cert), "--tls-key-file", str(f.server_key),
                            "--tls-ca-cert-file", str(f.ca), "--tls-auth-clients", "yes"])
        client = redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(f.ca),
                             ssl_certfile=str(f.client_cert), ssl_keyfile=str(f.client_key), socket_timeout=5)
        try:
            wait_for(lambda: _pings(client), 15, "the TLS redis-server", 0.1)
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()

    def url(self, db: int = 0) -> str:
        return f"rediss://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        _stop(self.proc)


class TlsSentinel:
    """One sentinel on a TLS-only port monitoring `server` over TLS (`tls-replication yes`), quorum 1."""

    MASTER = "nanoedit-tls"

    def __init__(self, server: TlsRedisServer, directory: Path) -> None:
        self.port = free_port()
        f = server.files
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"
        conf.write_text(
            f"port 0\ntls-port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"tls-cert-file {f.server_cert}\ntls-key-file {f.server_key}\ntls-ca-cert-file {f.ca}\n"
            f"tls-auth-clients yes\ntls-replication yes\n"
            # The sentinel is a TLS client of the master, which requires a client certificate.
            f"tls-client-cert-file {f.client_cert}\ntls-client-key-file {f.client_key}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {server.port} 1\n")
        self.proc = _start([str(conf), "--sentinel"])
        client = redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(f.ca),
                             ssl_certfile=str(f.client_cert), ssl_keyfile=str(f.client_key), socket_timeout=5,
                             decode_responses=True)

        def master_known() -> bool:
            try:
                return bool(client.sentinel_get_master_addr_by_name(self.MASTER))
            except redis.RedisError:
                return False

        try:
            wait_for(master_known, 20, "the TLS sentinel to know its master", 0.1)
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()

    def stop(self) -> None:
        _stop(self.proc)


class SentinelTrio:
    """A master, one replica and one sentinel (quorum 1) with short failure detection, all on 127.0.0.1."""

    MASTER = "nanoedit-test"

    def __init__(self, *, down_after_ms: int = 1000, failover_timeout_ms: int = 5000) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nanoedit-sentinel-"))
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            self._start(down_after_ms, failover_timeout_ms)
        except BaseException:
            self.stop()
            raise

    def _start(self, down_after_ms: int, failover_timeout_ms: int) -> None:
        for name in ("master", "replica", "sentinel"):
            (self.dir / name).mkdir()
        self.master = _start([*_COMMON, "--port", str(self.master_port), "--dir", str(self.dir / "master"),
                              "--replica-announce-ip", "127.0.0.1"])
        self._procs.append(self.master)
        wait_for(lambda: _pings(redis.Redis(port=self.master_port)), 15, "the master")
        self.replica = _start([*_COMMON, "--port", str(self.replica_port), "--dir", str(self.dir / "replica"),
                               "--replicaof", "127.0.0.1", str(self.master_port),
                               "--replica-announce-ip", "127.0.0.1"])
        self._procs.append(self.replica)
        conf = self.dir / "sentinel" / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.dir / 'sentinel'}\n"
            f"sentinel announce-ip 127.0.0.1\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}\n"
            f"sentinel failover-timeout {self.MASTER} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.MASTER} 1\n")
        self.sentinel = _start([str(conf), "--sentinel"])
        self._procs.append(self.sentinel)
        self.sentinel_client = redis.Redis(port=self.sentinel_port, decode_responses=True, socket_timeout=2)
        wait_for(self._replica_known, 30, "the sentinel to see the replica in sync", 0.2)

    def _replica_known(self) -> bool:
        try:
            replicas = self.sentinel_client.sentinel_slaves(self.MASTER)
        except redis.RedisError:
            return False
        return any(not r["is_sdown"] and r.get("master-link-status") == "ok" for r in replicas)

    def master_address(self) -> tuple[str, int]:
        addr = self.sentinel_client.sentinel_get_master_addr_by_name(self.MASTER)
        return str(addr[0]), int(addr[1])

    def kill_master(self) -> None:
        self.master.send_signal(signal.SIGKILL)
        self.master.wait(5)

    def shutdown_master(self) -> None:
        """A planned stop: SHUTDOWN waits (up to `shutdown-timeout`, 10 s) for the replica to catch up, then exits."""
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it exits
            redis.Redis(port=self.master_port, retry=NO_RETRY).shutdown(nosave=True)  # no retry: it is meant to go
        self.master.wait(15)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            _stop(proc)
        shutil.rmtree(self.dir, ignore_errors=True)
