"""A throwaway certificate authority for tests: one certificate per mesh role, TLS channels."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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


def without_insecure(environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` without the test run's plaintext default: children get TLS as deployed."""
    return {k: v for k, v in environment.items() if k != "TICKMESH_GRPC_INSECURE"}


async def run_credentials(
    state_dir: Path, role: str, within_seconds: float = 30.0
) -> grpc.ChannelCredentials:
    """`role`'s credentials from the CA `tickmesh run`/`demo` makes under STATE_DIR/tls."""
    key = state_dir / "tls" / role / "tls.key"
    async with asyncio.timeout(within_seconds):
        while not key.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)  # the certificate is written right after its key
    return TestPki(state_dir / "tls", issue_certificates=False).material(role).channel_credentials()
