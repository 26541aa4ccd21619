"""Real directories for the `ldap` source's tests: a private OpenLDAP slapd and a Samba AD DC.

Both are the Debian packages' daemons on 127.0.0.1 (reference/ldap-ad-testing.md), with
certificates from a throwaway test CA whose SAN is IP 127.0.0.1, so LDAPS is verified, never
switched off. slapd gets free ports of its own per instance; Samba always listens on 389/636, so
one DC serves a whole test session.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Programs the directories need, with the Debian package that brings each (Makefile SERVICES).
SLAPD_PROGRAMS = {"slapd": "slapd", "slapadd": "slapd"}
SAMBA_PROGRAMS = {"samba": "samba", "samba-tool": "samba", "winbindd": "winbind"}
SBIN = ("/usr/sbin", "/sbin")


def find_program(name: str) -> str | None:
    """The program's path on PATH or in sbin (root's PATH may lack it under some runners)."""
    path = shutil.which(name)
    if path is None:
        for folder in SBIN:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return path


def missing_packages(programs: dict[str, str]) -> list[str]:
    """Debian packages to install for the programs that are not here."""
    return sorted({pkg for prog, pkg in programs.items() if find_program(prog) is None})


class TestCA:
    """A certificate authority for one test session; server certificates carry SAN IP 127.0.0.1."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._name = name
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )  # fmt: skip
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, stem: str, *, ip: str = "127.0.0.1", dns: str = "localhost"
    ) -> tuple[Path, Path]:
        """Write `<stem>.pem` and `<stem>.key` (RSA for Samba's GnuTLS); return both paths."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName(dns)]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_file, key_file = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Wait until something accepts on 127.0.0.1:`port`; fail with the daemon's log if it died."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited ({process.returncode}): {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no log)"


def ssha(password: str) -> str:
    """`{SSHA}` userPassword value, as slappasswd writes it."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class DirectoryUser:
    """One person in a test directory."""

    uid: str
    password: str
    mail: str = ""


@dataclass
class Slapd:
    """A private slapd: its own config file, database folder and free ports (never the system one)."""

    root: Path
    ca: TestCA
    users: list[DirectoryUser]
    base_dn: str = "dc=example,dc=test"
    service_password: str = field(default_factory=lambda: f"Svc-{secrets.token_hex(8)}")
    ldap_port: int = field(default_factory=free_port)
    ldaps_port: int = field(default_factory=free_port)
    # slapd's -d level: "stats" logs every BIND to slapd.log (`binds` counts them).
    debug: str = "0"
    process: subprocess.Popen[bytes] | None = None

    @property
    def service_dn(self) -> str:
        """The service account that searches for users."""
        return f"cn=gateway,ou=services,{self.base_dn}"

    @property
    def ldaps_url(self) -> str:
        """LDAPS on its own port."""
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldap_url(self) -> str:
        """Plain LDAP (StartTLS available) on its own port."""
        return f"ldap://127.0.0.1:{self.ldap_port}"

    def user_dn(self, uid: str) -> str:
        """Where a user lives."""
        return f"uid={uid},ou=people,{self.base_dn}"

    def _write(self) -> Path:
        cert, key = self.ca.issue("slapd")
        db = self.root / "db"
        db.mkdir(parents=True, exist_ok=True)
        conf = self.root / "slapd.conf"
        conf.write_text(
            textwrap.dedent(f"""\
            include /etc/ldap/schema/core.schema
            include /etc/ldap/schema/cosine.schema
            include /etc/ldap/schema/nis.schema
            include /etc/ldap/schema/inetorgperson.schema
            pidfile {self.root}/slapd.pid
            argsfile {self.root}/slapd.args
            modulepath /usr/lib/ldap
            moduleload back_mdb
            TLSCACertificateFile {self.ca.ca_file}
            TLSCertificateFile {cert}
            TLSCertificateKeyFile {key}
            database mdb
            maxsize 67108864
            suffix "{self.base_dn}"
            rootdn "cn=admin,{self.base_dn}"
            rootpw {ssha(secrets.token_hex(16))}
            directory {db}
            index uid,mail eq
            access to attrs=userPassword by anonymous auth by * none
            access to * by dn.exact="{self.service_dn}" read by users read by anonymous auth
            """)
        )
        entries = [
            f"dn: {self.base_dn}\nobjectClass: dcObject\nobjectClass: organization\n"
            "dc: example\no: Example\n",
            f"dn: ou=people,{self.base_dn}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=services,{self.base_dn}\nobjectClass: organizationalUnit\nou: services\n",
            f"dn: {self.service_dn}\nobjectClass: organizationalRole\n"
            f"objectClass: simpleSecurityObject\ncn: gateway\n"
            f"userPassword: {ssha(self.service_password)}\n",
        ]
        for user in self.users:
            mail = f"mail: {user.mail}\n" if user.mail else ""
            entries.append(
                f"dn: {self.user_dn(user.uid)}\nobjectClass: inetOrgPerson\nuid: {user.uid}\n"
                f"cn: {user.uid}\nsn: {user.uid}\n{mail}userPassword: {ssha(user.password)}\n"
            )
        ldif = self.root / "init.ldif"
        ldif.write_text("\n".join(entries))
        subprocess.run(
            [find_program("slapadd") or "slapadd", "-q", "-f", str(conf), "-l", str(ldif)],
            check=True,
            capture_output=True,
        )
        return conf

    def start(self) -> None:
        """Start (or restart, same ports and data) in the foreground of a child process."""
        conf = self.root / "slapd.conf"
        if not conf.exists():
            conf = self._write()
        log = self.root / "slapd.log"
        urls = f"{self.ldap_url}/ {self.ldaps_url}/"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [find_program("slapd") or "slapd", "-d", self.debug, "-f", str(conf), "-h", urls],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.ldaps_port, self.process, log, 15)
        wait_for_port(self.ldap_port, self.process, log, 15)

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        _stop(self.process)
        self.process = None

    def binds(self, uid: str) -> int:
        """How many simple binds as this user slapd received (needs `debug="stats"`)."""
        log = (self.root / "slapd.log").read_text(errors="replace")
        return log.count(f'BIND dn="{self.user_dn(uid)}" method=128')

    def pause(self) -> None:
        """Freeze the daemon: the kernel still accepts connections, nothing ever answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        # The signal is asynchronous: wait until every thread has really stopped.
        tasks = Path(f"/proc/{self.process.pid}/task")
        end = time.monotonic() + 5
        while time.monotonic() < end:
            states = []
            for task in tasks.iterdir():
                with contextlib.suppress(OSError):
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            if states and all(state in {"T", "t"} for state in states):
                return
            time.sleep(0.01)
        raise RuntimeError("slapd did not stop on SIGSTOP")

    def resume(self) -> None:
        """Undo `pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# Samba's Python API, run by Debian's own python3 (the `samba` module is built for it). Creates
# users offline against the database file: one process instead of ~1.5 s per samba-tool call.
_SAMBA_SETUP = """
import json, sys, time
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
import ldb

spec = json.load(sys.stdin)
lp = LoadParm()
lp.load(spec["smbconf"])
db = SamDB(url=spec["url"], session_info=system_session(), lp=lp)
domain = db.domain_dn()
m = ldb.Message()
m.dn = ldb.Dn(db, domain)
settings = {
    "lockoutThreshold": str(spec["lockout_threshold"]),
    # 30 minutes (in 100 ns units, negative = relative), longer than any test session
    "lockoutDuration": str(-30 * 60 * 10**7),
    "lockOutObservationWindow": str(-30 * 60 * 10**7),
    "minPwdAge": "0",
}
for name, value in settings.items():
    m[name] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, name)
db.modify(m)
for user in spec["users"]:
    db.newuser(
        user["name"], user["password"], mailaddress=user.get("mail") or None,
        force_password_change_at_next_login_req=user.get("state") == "must_change",
    )
    flt = "(sAMAccountName=%s)" % user["name"]
    if user.get("state") == "disabled":
        db.disable_account(flt)
    if user.get("state") == "expired_account":
        db.setexpiry(flt, -3600, no_expiry_req=False)
"""


@dataclass(frozen=True)
class SambaUser:
    """One account of the test domain; `state` is ok, disabled, expired_account or must_change."""

    name: str
    password: str
    mail: str = ""
    state: str = "ok"


@dataclass
class SambaDC:
    """A Samba Active Directory DC with only its LDAP service, on 127.0.0.1:389/636."""

    root: Path
    ca: TestCA
    users: list[SambaUser]
    lockout_threshold: int = 5
    realm: str = "CORP.TEST"
    domain: str = "CORP"
    admin_password: str = field(default_factory=lambda: f"Adm1n#{secrets.token_hex(8)}")
    process: subprocess.Popen[bytes] | None = None
    ldap_port: int = 389
    ldaps_port: int = 636

    @property
    def upn_suffix(self) -> str:
        """What follows the @ in user principal names."""
        return self.realm.lower()

    @property
    def base_dn(self) -> str:
        """The domain's naming context."""
        return ",".join(f"DC={part}" for part in self.realm.lower().split("."))

    @property
    def ldaps_url(self) -> str:
        """LDAPS on 636."""
        return "ldaps://127.0.0.1:636"

    @property
    def smb_conf(self) -> Path:
        """The generated smb.conf."""
        return self.root / "etc" / "smb.conf"

    def upn(self, name: str) -> str:
        """name@corp.test."""
        return f"{name}@{self.upn_suffix}"

    def provision(self) -> None:
        """Provision the domain (7-17 s), configure TLS and LDAP only, create the users offline."""
        tool = find_program("samba-tool") or "samba-tool"
        done = subprocess.run(
            [
                tool, "domain", "provision", f"--realm={self.realm}", f"--domain={self.domain}",
                "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
                f"--adminpass={self.admin_password}", f"--targetdir={self.root}",
                "--option=interfaces=lo", "--option=bind interfaces only=yes",
            ],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            # Seen on a machine with Samba installed without its recommended VFS modules.
            hint = (
                "install Debian's samba-vfs-modules (make services does): "
                if "vfs" in done.stderr
                else ""
            )
            raise RuntimeError(f"samba-tool domain provision failed: {hint}{done.stderr[-1500:]}")
        cert, key = self.ca.issue("samba")
        text = self.smb_conf.read_text()
        extra = (
            "\tserver services = ldap\n"
            "\ttls enabled = yes\n"
            f"\ttls keyfile = {key}\n\ttls certfile = {cert}\n\ttls cafile = {self.ca.ca_file}\n"
        )
        self.smb_conf.write_text(text.replace("[global]\n", "[global]\n" + extra, 1))
        import json

        spec = {
            "smbconf": str(self.smb_conf),
            "url": f"tdb://{self.root}/private/sam.ldb",
            "lockout_threshold": self.lockout_threshold,
            "users": [
                {
                    "name": u.name, "password": u.password, "upn": self.upn(u.name),
                    "mail": u.mail, "state": u.state,
                }
                for u in self.users
            ],
        }  # fmt: skip
        done = subprocess.run(
            ["/usr/bin/python3", "-c", _SAMBA_SETUP],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            # The error text is Samba's; it never contains a password (they arrive on stdin).
            raise RuntimeError(f"creating the test domain's users failed: {done.stderr[-1500:]}")

    def start(self) -> None:
        """Run `samba -i -M single` (one foreground process) until LDAPS accepts."""
        log = self.root / "samba.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [find_program("samba") or "samba", "-i", "-s", str(self.smb_conf), "-M", "single"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.ldaps_port, self.process, log, 60)

    def stop(self) -> None:
        """Stop the DC."""
        if self.process is None:
            return
        _stop(self.process)
        self.process = None


def ports_in_use(*ports: int) -> list[int]:
    """Which of these 127.0.0.1 ports something already accepts on."""
    busy = []
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                busy.append(port)
        except OSError:
            pass
    return busy


if __name__ == "__main__":  # pragma: no cover - a manual check: python -m tests.ldap_servers
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        server = Slapd(Path(tmp), TestCA(Path(tmp) / "ca"), [DirectoryUser("jdoe", "Pw-1", "j@x")])
        server.start()
        print("slapd up", server.ldaps_url, file=sys.stderr)
        server.stop()
