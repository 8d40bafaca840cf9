"""Mutual TLS material of a process (TICKMESH_TLS_DIR) as gRPC server and channel credentials.

The directory has the layout of a cert-manager `kubernetes.io/tls` Secret: `ca.crt` (the
mesh's CA), `tls.crt` and `tls.key` (this process's certificate, used both as its server
identity and as its client identity when it calls other services).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from tickmesh.core.settings import CommonSettings, SettingsError

TLS_FILES = ("ca.crt", "tls.crt", "tls.key")


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of one process's CA, certificate and key."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, directory: Path, setting: str = "TICKMESH_TLS_DIR") -> TlsMaterial:
        """Read DIR/{ca.crt,tls.crt,tls.key}; SettingsError naming `setting` and what is missing."""
        missing = [name for name in TLS_FILES if not (directory / name).is_file()]
        if missing:
            raise SettingsError(
                f"{setting}: {directory} lacks {', '.join(missing)}"
                " (`tickmesh certs issue` writes ca.crt, tls.crt, tls.key)"
            )
        return cls(
            (directory / "ca.crt").read_bytes(),
            (directory / "tls.crt").read_bytes(),
            (directory / "tls.key").read_bytes(),
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that demand a client certificate signed by the mesh's CA."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials: trust the mesh's CA, present this process's certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def mesh_tls(settings: CommonSettings) -> TlsMaterial | None:
    """The process's TLS material, or None when TICKMESH_GRPC_INSECURE allows plaintext.

    SettingsError (one line) when neither is set, when both are, or when plaintext is asked
    for in production: a service must never fall back to an unauthenticated port silently.
    """
    if settings.grpc_insecure:
        if settings.environment == "production":
            raise SettingsError(
                "TICKMESH_GRPC_INSECURE: plaintext gRPC is refused when "
                "TICKMESH_ENVIRONMENT=production; set TICKMESH_TLS_DIR"
            )
        if settings.tls_dir is not None:
            raise SettingsError(
                "TICKMESH_TLS_DIR and TICKMESH_GRPC_INSECURE are both set: choose one"
            )
        return None
    if settings.tls_dir is None:
        raise SettingsError(
            "TICKMESH_TLS_DIR: not set; point it at a directory with ca.crt, tls.crt and "
            "tls.key (`tickmesh certs issue`), or set TICKMESH_GRPC_INSECURE=true outside "
            "production"
        )
    return TlsMaterial.load(settings.tls_dir)
