"""A throwaway certificate authority for tests: one certificate per mesh role, TLS channels."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc import aio

from tickmesh.core.roles import ROLES
from tickmesh.core.tls import TlsMaterial
from tickmesh.mesh.certs import init_ca, issue


class TestPki:
    """A CA under `directory` with a certificate per role (made here, or by `tickmesh run`)."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, directory: Path, issue_certificates: bool = True) -> None:
        self.directory = directory
        if issue_certificates:
            init_ca(directory)
            for role in ROLES:
                issue(directory, role)

    def tls_dir(self, role: str) -> Path:
        """The TICKMESH_TLS_DIR of a process in `role`."""
        return self.directory / role

    def material(self, role: str) -> TlsMaterial:
        """The CA, certificate and key of `role`."""
        return TlsMaterial.load(self.tls_dir(role))

    def channel(self, address: str, role: str) -> aio.Channel:
        """A channel to `address` that presents `role`'s certificate."""
        return aio.secure_channel(address, self.material(role).channel_credentials())

    def channel_without_client_cert(self, address: str) -> aio.Channel:
        """A channel that trusts the mesh's CA but has no certificate of its own."""
        ca = (self.directory / "ca.crt").read_bytes()
        return aio.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
