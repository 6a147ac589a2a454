"""Run the simulator: in a background thread (tests) or in the foreground (CLI).

The thread runner binds its socket before starting uvicorn, so a test gets a real
port on 127.0.0.1 with no race and no fixed port numbers.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from partnerboard.simulator.app import create_app

# token key -> environment variable shared by the simulator and the collectors
SECRET_ENV = {
    "marketplace": "PARTNERBOARD_MARKETPLACE_TOKEN",
    "payments": "PARTNERBOARD_PAYMENTS_TOKEN",
    "payments_client_id": "PARTNERBOARD_PAYMENTS_CLIENT_ID",
    "payments_client_secret": "PARTNERBOARD_PAYMENTS_CLIENT_SECRET",
}


def tokens_from_env(generate_missing: bool = False) -> dict[str, str]:
    tokens = {}
    for key, env in SECRET_ENV.items():
        value = os.environ.get(env)
        if not value:
            if not generate_missing:
                raise SystemExit(
                    f"simulator: {env} is not set; export it (any random string) "
                    "so the simulator and the collectors share the same secret"
                )
            value = secrets.token_urlsafe(24)
            os.environ[env] = value
        tokens[key] = value
    return tokens


@dataclass
class RunningSimulator:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: Any

    def url(self, partner: str) -> str:
        return f"{self.base_url}/{partner}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_in_thread(tokens: dict[str, str], **options: Any) -> RunningSimulator:
    # IPPROTO_TCP, not the default 0: asyncio switches Nagle off (TCP_NODELAY) only on
    # accepted sockets whose proto says TCP. With Nagle on, uvicorn's body (a write after
    # the headers) waited for the client's delayed ACK: 40 ms on every answer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(tokens, public_url=base_url, **options)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="partner-simulator")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the partner simulator did not start within 10 s")
        time.sleep(0.02)
    return RunningSimulator(base_url, server, thread, app)


def serve_forever(host: str, port: int, tokens: dict[str, str], **options: Any) -> None:
    app = create_app(tokens, public_url=f"http://{host}:{port}", **options)
    app.state.lists.truth()  # build the business history now, not on the first request
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=1)
