"""A local certificate authority for the mesh: `tickmesh certs init` and `tickmesh certs issue`.

Each process gets a directory in the layout of a Kubernetes `kubernetes.io/tls` Secret made
by cert-manager (`ca.crt`, `tls.crt`, `tls.key`), so the services read local and cluster
certificates the same way. The certificate names its role in a URI SAN
`spiffe://tickmesh/ROLE`; servers authorize callers by that role (tickmesh.core.roles).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tickmesh.core.roles import ROLES, role_uri

# A local CA outlives any demo; leaves are re-issued by every `tickmesh run`, so a year is plenty.
CA_DAYS = 3650
LEAF_DAYS = 365
LOCAL_DNS = ("localhost",)
LOCAL_IPS = ("127.0.0.1",)

app = typer.Typer(help="A local certificate authority for mutual TLS inside the mesh.")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_ca(directory: Path) -> bool:
    """Make an EC P-256 CA as DIR/ca.crt and DIR/ca.key unless one exists; True if made."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickmesh local CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
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
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def issue(directory: Path, role: str, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> Path:
    """Issue ROLE's certificate under DIR/ROLE/{ca.crt,tls.crt,tls.key}, signed by DIR's CA.

    The leaf serves as the process's server identity and as its client identity, so it has
    both extended key usages; localhost and 127.0.0.1 are always among its names.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    ca_pem = (directory / "ca.crt").read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / 'ca.key'} is not an EC key")
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(role_uri(role))]
    names += [x509.DNSName(name) for name in dict.fromkeys([*LOCAL_DNS, *dns])]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys([*LOCAL_IPS, *ips])]
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tickmesh {role}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_dir = directory / role
    leaf_dir.mkdir(parents=True, exist_ok=True)
    _write_private(leaf_dir / "tls.key", _pem_key(key))
    (leaf_dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (leaf_dir / "ca.crt").write_bytes(ca_pem)
    return leaf_dir


def issue_all(directory: Path) -> dict[str, Path]:
    """A CA (kept if present) and a fresh certificate per role: what `tickmesh run` starts with."""
    init_ca(directory)
    return {role: issue(directory, role) for role in ROLES}


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="Where ca.crt and ca.key go.")],
) -> None:
    """Make a CA in DIR (ca.crt, ca.key) unless one is there already."""
    made = init_ca(directory)
    typer.echo(f"{'made' if made else 'kept'} {directory / 'ca.crt'}")


@app.command("issue")
def issue_command(
    directory: Annotated[Path, typer.Argument(help="The CA's directory (from `certs init`).")],
    role: Annotated[str, typer.Argument(help=f"One of: {', '.join(ROLES)}.")],
    dns: Annotated[
        list[str] | None, typer.Option("--dns", help="A DNS name clients dial (repeatable).")
    ] = None,
    ip: Annotated[
        list[str] | None, typer.Option("--ip", help="An IP address clients dial (repeatable).")
    ] = None,
) -> None:
    """Issue ROLE's certificate as DIR/ROLE/{ca.crt,tls.crt,tls.key}."""
    if not (directory / "ca.key").exists():
        raise typer.BadParameter(f"no CA in {directory}; run `tickmesh certs init {directory}`")
    try:
        leaf_dir = issue(directory, role, dns or (), ip or ())
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(f"issued {leaf_dir / 'tls.crt'} for {role_uri(role)}")


def insecure_requested(environment: Mapping[str, str]) -> bool:
    """Whether TICKMESH_GRPC_INSECURE asks for plaintext (tests of things other than TLS)."""
    return environment.get("TICKMESH_GRPC_INSECURE", "").strip().lower() in {"1", "true", "yes"}


def child_tls_environments(
    state_dir: Path, child_names: Sequence[str], environment: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """TICKMESH_TLS_DIR of each service child of `tickmesh run`/`demo`, certificates made.

    The CA lives in STATE_DIR/tls and is kept across runs, so a reader certificate issued
    for grpcurl stays valid; each child ("bars-1" is a bar service) gets its role's directory.
    Empty when TICKMESH_GRPC_INSECURE asks for plaintext.
    """
    if insecure_requested(environment):
        return {}
    root = state_dir / "tls"
    directories = issue_all(root)
    return {
        name: {"TICKMESH_TLS_DIR": str(directories[name.split("-")[0]])}
        for name in child_names
        if name.split("-")[0] in directories
    }


def role_tls_dir(state_dir: Path, role: str) -> Path:
    """Where `tickmesh run` keeps `role`'s certificate under its state directory."""
    return state_dir / "tls" / role
