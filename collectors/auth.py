"""httpx authentication for every partner auth style in the config.

Secrets are resolved by name when the auth is built, registered for scrubbing, and
only ever travel in request headers. The OAuth2 client-credentials flow fetches its
token through the same client (so retries, timeouts and logging apply to it too),
refreshes it shortly before it expires, and once more if the API answers 401.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx

from partnerboard.core.config import Auth
from partnerboard.core.config.secrets import remember, resolve_secret


class ApiKeyAuth(httpx.Auth):
    """``<header>: <prefix><key>``; a raw key in Authorization when prefix is empty."""

    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self.value
        yield request


class OAuthError(Exception):
    """The token endpoint refused or answered nonsense."""


class ClientCredentialsAuth(httpx.Auth):
    """OAuth2 client credentials (RFC 6749 §4.4), client authenticated with HTTP basic."""

    REFRESH_MARGIN_S = 60.0

    def __init__(self, token_url: str, client_id: str, client_secret: str,
                 scope: str | None = None) -> None:
        self.token_url = token_url
        self.client = httpx.BasicAuth(client_id, client_secret)
        self.scope = scope
        self.token: str | None = None
        self.expires_at = 0.0
        self.fetches = 0
        self._lock = threading.Lock()

    def _token_request(self) -> httpx.Request:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        request = httpx.Request("POST", self.token_url, data=data,
                                headers={"Accept": "application/json"})
        return next(self.client.auth_flow(request))

    def _store(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise OAuthError(
                f"token endpoint {self.token_url} answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise OAuthError(f"token endpoint {self.token_url} returned no access_token") from None
        remember(token)
        self.token = token
        margin = min(self.REFRESH_MARGIN_S, lifetime / 10)
        self.expires_at = time.monotonic() + lifetime - margin
        self.fetches += 1

    def _stale(self) -> bool:
        return self.token is None or time.monotonic() >= self.expires_at

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._stale():
            response = yield self._token_request()
            response.read()
            with self._lock:
                self._store(response)
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:  # revoked early: one fresh token, one retry
            token_response = yield self._token_request()
            token_response.read()
            with self._lock:
                self._store(token_response)
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


def build_auth(auth: Auth, used_by: str) -> httpx.Auth | None:
    """The httpx auth for a config ``Auth``; resolves (and so validates) its secrets."""

    def secret(name: str | None) -> str:
        return resolve_secret(name or "", used_by=used_by)

    if auth.type == "none":
        return None
    if auth.type == "bearer":
        return ApiKeyAuth("Authorization", f"Bearer {secret(auth.token_env)}")
    if auth.type == "api_key":
        return ApiKeyAuth(auth.header, f"{auth.prefix}{secret(auth.token_env)}")
    if auth.type == "basic":
        password = secret(auth.password_env) if auth.password_env else ""
        return httpx.BasicAuth(secret(auth.username_env), password)
    if auth.type == "oauth2_client_credentials":
        return ClientCredentialsAuth(auth.token_url or "", secret(auth.client_id_env),
                                     secret(auth.client_secret_env), auth.scope)
    raise ValueError(f"unsupported auth type {auth.type!r}")
