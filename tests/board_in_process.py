"""The board server (``server.create_app``) in the test's own process, through Starlette's
TestClient: the real routes, guard, sign-in, Streamlit runtime, websocket and pages on a
real store, without a port or a subprocess. What runs in the server can be observed (the
uploaded-file manager) or held (a render waiting on an event) from the test.

Streamlit's ``Runtime`` is a process singleton and ``create_app`` sets Streamlit options
for the whole process, so one board per module at most, and ``running`` puts both back
when it ends (the AppTest page tests of later modules run with Streamlit's defaults).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from partnerboard.core import store as store_mod
from partnerboard.core.access import cli_user, users
from partnerboard.core.config import load_config
from tests.conftest import config_toml, db_url_for

PASSWORD = "a long enough password 42"
ORIGIN = "http://testserver"
# Options `create_app` sets for the process (server._streamlit_options), restored afterwards.
_OPTIONS = ("client.showErrorDetails", "client.toolbarMode", "server.enableXsrfProtection",
            "server.enableStaticServing", "global.developmentMode", "browser.gatherUsageStats",
            "server.fileWatcherType", "server.runOnSave", "runner.magicEnabled", "runner.postScriptGC",
            "server.maxUploadSize")


@dataclass
class Page:
    """A board page open in a websocket session, as a browser tab would hold it."""

    ws: Any
    session_id: str = ""
    uploaders: list[Any] = field(default_factory=list)  # the FileUploader elements it showed

    def run(self, page_name: str = "") -> Page:
        """Run ``page_name`` (its url path; "" is the default page) to its end."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_name = page_name
        self.ws.send_bytes(msg.SerializeToString())
        self.uploaders = []
        for fwd in self._messages():
            kind = fwd.WhichOneof("type")
            if kind == "new_session":
                self.session_id = fwd.new_session.initialize.session_id
            elif kind == "delta" and fwd.delta.new_element.WhichOneof("type") == "file_uploader":
                self.uploaders.append(fwd.delta.new_element.file_uploader)
            elif kind == "script_finished":
                return self
        raise AssertionError("unreachable")

    def file_ids(self, count: int = 1) -> list[str]:
        """Ask Streamlit for upload URLs, as the uploader does when a file is picked."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        msg.file_urls_request.request_id = "r1"
        msg.file_urls_request.session_id = self.session_id
        msg.file_urls_request.file_names.extend(f"f{i}.csv" for i in range(count))
        self.ws.send_bytes(msg.SerializeToString())
        for fwd in self._messages():
            if fwd.WhichOneof("type") == "file_urls_response":
                return [u.file_id for u in fwd.file_urls_response.file_urls]
        raise AssertionError("unreachable")

    def _messages(self) -> Iterator[Any]:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(self.ws.receive_bytes())
            yield fwd


@dataclass
class Board:
    client: TestClient
    db: str

    def sign_in(self, email: str) -> str:
        """The ``Cookie`` header of a browser signed in as ``email`` (with Streamlit's XSRF
        cookie, as ``/_stcore/health`` hands it to anyone)."""
        r = self.client.post("/signin", data={"email": email, "password": PASSWORD}, follow_redirects=False)
        assert r.status_code == 303, r.text
        session = r.cookies["partnerboard_session"]
        xsrf = self.client.get("/_stcore/health").cookies["_streamlit_xsrf"]
        self.client.cookies.clear()  # each request names its person itself
        return f"partnerboard_session={session}; _streamlit_xsrf={xsrf}"

    @contextmanager
    def page(self, cookie: str, page_name: str = "") -> Iterator[Page]:
        with self.client.websocket_connect("/_stcore/stream", subprotocols=["streamlit"],
                                           headers={"cookie": cookie}) as ws:
            yield Page(ws).run(page_name)

    def upload(self, cookie: str, session_id: str, file_id: str, data: bytes, *,
               name: str = "answers.csv", method: str = "PUT") -> Any:
        """Streamlit's upload route as the uploader calls it (multipart, XSRF header)."""
        xsrf = cookie.split("_streamlit_xsrf=")[1]
        headers = {"cookie": cookie, "x-xsrftoken": xsrf, "origin": ORIGIN}
        path = f"/_stcore/upload_file/{session_id}/{file_id}"
        if method == "DELETE":
            return self.client.delete(path, headers=headers)
        return self.client.put(path, files={"file": (name, data, "text/csv")}, headers=headers)


def uploaded_files() -> Any:
    """Streamlit's uploaded-file manager of the running board (in this process)."""
    from streamlit.runtime import Runtime

    return Runtime.instance().uploaded_file_mgr


@contextmanager
def running(workdir: Path, people: dict[str, tuple[str, str | None]]) -> Iterator[Board]:
    """A board (built-in sign-in, no collectors) with ``people`` (email: (role, partner)),
    each with the password ``PASSWORD``."""
    from streamlit import config as st_config
    from streamlit.runtime import Runtime

    from partnerboard import server

    cfg = workdir / "partners.toml"
    cfg.write_text(config_toml("http://127.0.0.1:9", access={"mode": "builtin"}))
    db = db_url_for(workdir / "board.duckdb")
    with store_mod.open_store(db).engine.begin() as conn:
        for email, (role, partner) in people.items():
            users.add(conn, load_config(cfg), cli_user(), email, role, partner_id=partner, password=PASSWORD)
    store_mod.close_store(db)
    saved_env = {k: os.environ.get(k) for k in ("PARTNERBOARD_CONFIG", "PARTNERBOARD_DATABASE_URL")}
    saved_options = {key: st_config.get_option(key) for key in _OPTIONS}
    os.environ.update(PARTNERBOARD_CONFIG=str(cfg), PARTNERBOARD_DATABASE_URL=db)
    try:
        with TestClient(server.create_app(str(cfg), db, collect=False)) as client:
            yield Board(client, db)
    finally:
        Runtime._instance = None
        for key, value in saved_options.items():
            st_config.set_option(key, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
