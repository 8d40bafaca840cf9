"""The bootstrap admin from TICKMESH_GATEWAY_ADMIN_USERNAME/_PASSWORD: inserted, never merged.

An existing user of that name is never promoted as it stands: whoever self-registered the name
first would become admin with their own password, and a rotated configured password would be
ignored. A user that does not match (another password, role, or a disabled account) stops
the start, unless TICKMESH_GATEWAY_ADMIN_RESET asks to overwrite it, which also ends every
session of that user.
"""

from __future__ import annotations

import logging

from tickmesh.gateway.accounts import Accounts, User

log = logging.getLogger(__name__)


class AdminMismatch(Exception):
    """The configured admin's name belongs to a user that does not match the configuration."""


async def bootstrap_admin(accounts: Accounts, username: str, password: str, reset: bool) -> User:
    """Insert the admin if the name is free; check it, or with `reset` overwrite it, otherwise.

    AdminMismatch names what differs (never a password) and the setting that resolves it.
    """
    inserted = await accounts.insert_admin(username, password)
    if inserted is not None:
        log.info("bootstrap admin created", extra={"username": username})
        return inserted
    # The name is taken (in some case), possibly by another replica's insert a moment ago.
    found = await accounts.find(username)
    if found is None:
        raise AdminMismatch(f"bootstrap admin {username!r} vanished while being created; retry")
    user, stored_hash = found
    problems = []
    if user.role != "admin":
        problems.append(f"has the role {user.role}")
    if user.disabled:
        problems.append("is disabled")
    if not await accounts.passwords.verify(stored_hash, password):
        problems.append("has another password")
    if not problems:
        return user
    if not reset:
        raise AdminMismatch(
            f"TICKMESH_GATEWAY_ADMIN_USERNAME: the existing user {user.username!r} "
            f"{' and '.join(problems)}; refusing to start. Set TICKMESH_GATEWAY_ADMIN_RESET=true "
            "to give it the configured password and the admin role (ending its sessions)"
        )
    log.warning(
        "bootstrap admin reset: configured password and admin role written, sessions ended",
        extra={"username": user.username, "was": ", ".join(problems)},
    )
    return await accounts.reset_to_admin(user.id, password)
