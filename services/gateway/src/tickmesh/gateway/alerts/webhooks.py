"""Posting one webhook: resolve the host once, check every answer, dial the checked address.

Checking a name and then letting the HTTP client resolve it again leaves a gap: a DNS server
that answers a public address to the check and 127.0.0.1 to the client (rebinding) reaches
inside. So the request goes to the checked IP itself; the Host header and, for https, the
TLS server name (and so certificate verification) stay those of the URL's host.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tickmesh.gateway.alerts.addresses import connect_form, parse_address, refusal

# A target's name → the addresses it stands for (as text). Tests inject their own.
Resolver = Callable[[str, int], Awaitable[list[str]]]
# Only the status matters: the body is read this far at most, then the connection dropped.
MAX_RESPONSE_BYTES = 4096


class WebhookRefused(Exception):
    """No attempt can succeed: the target is internal, or not a URL that can be dialled."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class WebhookSender:
    """Posts JSON to webhook URLs; no proxies, no redirects, no connection reuse."""

    def __init__(
        self,
        resolver: Resolver,
        allow_private: bool,
        deadline_seconds: float,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._resolver = resolver
        self._allow_private = allow_private
        self._deadline = deadline_seconds
        # trust_env=False: HTTP(S)_PROXY in the gateway's environment must not relay (or see)
        # traders' webhooks. No keep-alive: a pooled connection to an IP would be reused for
        # another host name on that IP, under the first one's TLS name.
        self._http = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,  # a redirect could point anywhere, unchecked
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=deadline_seconds,
            verify=verify,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def post(self, url: str, payload: dict[str, Any]) -> int:
        """POST `payload` to `url` and return the status code, all within the deadline.

        WebhookRefused when the target must not be called; TimeoutError at the deadline;
        httpx.HTTPError when the target cannot be reached or speaks no HTTP.
        """
        async with asyncio.timeout(self._deadline):
            request_url, extensions = await self._pinned(url)
            async with self._http.stream(
                "POST",
                request_url,
                json=payload,
                headers={"Host": _host_header(url)},
                extensions=extensions,
            ) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
                return response.status_code

    async def _pinned(self, url: str) -> tuple[httpx.URL, dict[str, Any]]:
        """The URL with its host replaced by one checked address, and the TLS name to use."""
        try:
            parsed = httpx.URL(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except (httpx.InvalidURL, ValueError) as error:
            raise WebhookRefused(f"not a valid URL: {error}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise WebhookRefused("not an http(s) URL with a host")
        if not 0 < port < 65536:
            raise WebhookRefused(f"port {port} is out of range")
        host = parsed.host
        literal = parse_address(host)
        answers = [host] if literal is not None else await self._resolve(host, port)
        addresses = []
        for answer in answers:
            address = parse_address(answer.split("%", 1)[0])
            if address is None:
                raise WebhookRefused(f"{host} resolved to {answer!r}, not an address")
            reason = refusal(address)
            if reason is not None and not self._allow_private:
                raise WebhookRefused(f"{host}: {reason}")
            addresses.append(connect_form(address))
        if not addresses:
            raise WebhookRefused(f"{host} has no address")
        # Every answer passed; dial the first, as a client would.
        extensions: dict[str, Any] = {}
        if parsed.scheme == "https" and literal is None:
            extensions["sni_hostname"] = host
        return parsed.copy_with(host=str(addresses[0])), extensions

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            return await self._resolver(host, port)
        except OSError as error:
            # Likely a typo'd or expired name, but DNS may be down: let the attempt retry.
            raise httpx.ConnectError(f"{host} does not resolve: {error}") from None


def _host_header(url: str) -> str:
    """The Host header of `url` (IDNA-encoded host, with the port when not the default)."""
    return httpx.URL(url).netloc.decode("ascii")
