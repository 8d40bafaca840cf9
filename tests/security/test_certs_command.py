"""`tickmesh certs`: the local CA and the role certificates the mesh's servers authorize by."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

from tickmesh.core.caller_authorization import role_of_certificate
from tickmesh.mesh.cli import app


def test_certs_init_then_issue_writes_a_role_certificate_signed_by_the_ca(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["certs", "init", str(tmp_path)]).exit_code == 0
    ca = (tmp_path / "ca.crt").read_bytes()
    # A second init keeps the CA: certificates issued earlier stay valid.
    assert runner.invoke(app, ["certs", "init", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "ca.crt").read_bytes() == ca
    issued = runner.invoke(
        app,
        ["certs", "issue", str(tmp_path), "bars", "--dns", "bars.tickmesh.svc", "--ip", "10.0.0.7"],
    )
    assert issued.exit_code == 0, issued.output
    leaf = tmp_path / "bars"
    assert (leaf / "ca.crt").read_bytes() == ca
    assert stat.S_IMODE((leaf / "tls.key").stat().st_mode) == 0o600
    pem = (leaf / "tls.crt").read_bytes()
    assert role_of_certificate(pem) == "bars"
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "bars.tickmesh.svc"}
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.0.0.7",
    }


def test_certs_issue_refuses_an_unknown_role_and_a_missing_ca(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["certs", "issue", str(tmp_path), "bars"])
    assert missing.exit_code != 0
    assert "certs init" in missing.output
    runner.invoke(app, ["certs", "init", str(tmp_path)])
    unknown = runner.invoke(app, ["certs", "issue", str(tmp_path), "root"])
    assert unknown.exit_code != 0
    assert "unknown role" in unknown.output
