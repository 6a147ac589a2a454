"""Streamlit's upload route, open only to the person whose open page offers an uploader.

Streamlit keeps every file PUT to ``/_stcore/upload_file/<session>/<file id>`` in memory,
for any live session and any file id, up to ``server.maxUploadSize``, until the session
is shut down; and a session whose websocket closed is kept a while for a reconnect, then
dropped *without* freeing its files. So the guard (``guard.Guard``) follows every
board websocket with a ``Watch`` and keeps, per Streamlit session (``Sessions``):

- whose it is: the signed-in person whose cookies opened the websocket;
- the uploaders its page shows: the ``file_uploader`` elements the page sent, with their
  size limit (this run's and the last finished run's, so a file picked while the page
  reruns still counts, and leaving the page withdraws them);
- the file ids Streamlit handed it (``file_urls_response``): the only ids it may fill;
- the files it holds.

``Sessions.admit`` lets a PUT through only from the session's own person, whose role may
upload (the ``upload`` action: editors and admins), to an issued id of a page that shows
an uploader; the guard then reads at most that uploader's limit (``MAX_FILE_BYTES``) and
answers 413 past it, before Streamlit sees the body. A page holds as many files as its
uploaders take (the newest replaces the oldest), a person at most
``MAX_FILES_PER_PERSON`` over all their open pages, and a session's files are freed when
its websocket closes (after a dropped connection the page has to be given the file again).
"""

from __future__ import annotations

import functools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from partnerboard.core.access import Forbidden, User, require
from partnerboard.core.changes import survey_upload

MiB = 1024 * 1024
MAX_FILE_BYTES = survey_upload.MAX_BYTES  # the largest file any page takes: the NPS import's
MAX_UPLOAD_MB = -(-MAX_FILE_BYTES // MiB)  # Streamlit's own cap (server.maxUploadSize), in its MB
MAX_FILES_PER_PERSON = 4  # held at once over all of a person's open pages
MULTIPART_MARGIN = 16 * 1024  # a multipart body's boundary, part headers and file name
FILES_PER_MULTIPLE_UPLOADER = 10
ISSUED_KEPT = 64  # file ids remembered per page (an uploader asks for one per file picked)
ROUTE = "/_stcore/upload_file/"


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


@dataclass
class Session:
    """One Streamlit session as the guard knows it."""

    id: str
    owner: str | None  # the email of the person whose websocket serves it
    watch: Watch
    shown: dict[str, tuple[int, int]] = field(default_factory=dict)  # uploader id: (bytes, files), this run
    finished: dict[str, tuple[int, int]] = field(default_factory=dict)  # ... the last finished run's
    issued: deque[str] = field(default_factory=lambda: deque(maxlen=ISSUED_KEPT))
    held: OrderedDict[str, int] = field(default_factory=OrderedDict)  # file id: bytes, oldest first

    def offer(self) -> tuple[int, int]:
        """(files the page takes at once, the most bytes one of them may have)."""
        uploaders = {**self.finished, **self.shown}.values()
        return sum(files for _, files in uploaders), max((size for size, _ in uploaders), default=0)


class Sessions:
    """Every board session of this process that a websocket serves; used from the event
    loop only. ``files`` returns Streamlit's uploaded-file manager (thread-safe)."""

    def __init__(self, files: Callable[[], Any]) -> None:
        self._files = files
        self._by_id: dict[str, Session] = {}

    def watch(self, owner: User | None) -> Watch:
        """Follow a websocket opened by ``owner`` (None: nobody signed in)."""
        return Watch(self, owner.email if owner is not None else None)

    def admit(self, user: User, method: str, path: str) -> Refusal | tuple[Session, str, int]:
        """Whether ``user`` may PUT (or DELETE) the upload at ``path``: the refusal, or
        (the session, the file id, the most bytes the file may have)."""
        parts = path[len(ROUTE):].split("/")
        if len(parts) != 2 or not all(parts):
            return Refusal(404, "not found")
        session_id, file_id = parts
        try:
            require(user, "upload")
        except Forbidden as exc:
            return Refusal(403, f"refused: {exc}")
        session = self._by_id.get(session_id)
        if session is None or session.owner != user.email:
            return Refusal(403, "refused: this upload is for another person's page or for no page open on "
                                "this board; upload from the page you have open")
        if method == "DELETE":
            return session, file_id, 0
        files, size = session.offer()
        if not files:
            return Refusal(403, "refused: the page you have open offers no file upload")
        if file_id not in session.issued:
            return Refusal(403, "refused: this file id is not one the page asked for; pick the file in the "
                                "page's uploader")
        elsewhere = sum(len(other.held) for other in self._by_id.values()
                        if other.owner == user.email and other is not session)
        here = min(len([f for f in session.held if f != file_id]) + 1, files)
        if elsewhere + here > MAX_FILES_PER_PERSON:
            return Refusal(429, f"refused: you already hold {elsewhere} uploaded files on other open "
                                f"pages of the board, and a person holds at most {MAX_FILES_PER_PERSON} "
                                "files at a time: import or remove them, or close those pages")
        return session, file_id, size

    def stored(self, session: Session, file_id: str, size: int) -> None:
        """Streamlit took the file: the page keeps its newest files, as many as it takes."""
        session.held[file_id] = size
        session.held.move_to_end(file_id)
        files, _ = session.offer()
        while len(session.held) > max(files, 1):
            oldest, _ = session.held.popitem(last=False)
            self._files().remove_file(session.id, oldest)

    def removed(self, session: Session, file_id: str) -> None:
        session.held.pop(file_id, None)

    def _bind(self, session_id: str, watch: Watch) -> Session:
        session = self._by_id.get(session_id)
        if session is None:
            session = self._by_id[session_id] = Session(session_id, watch.owner, watch)
        elif session.owner != watch.owner:  # another person's websocket took the session over:
            self._free(session)             # the files picked before are not theirs
            session = self._by_id[session_id] = Session(session_id, watch.owner, watch)
        session.watch = watch
        return session

    def _ended(self, watch: Watch) -> None:
        session = watch.session
        if session is not None and session.watch is watch and self._by_id.get(session.id) is session:
            del self._by_id[session.id]
            self._free(session)

    def _free(self, session: Session) -> None:
        session.held.clear()
        self._files().remove_session_files(session.id)


class Watch:
    """What the server tells one websocket's page, as far as uploads go."""

    def __init__(self, sessions: Sessions, owner: str | None) -> None:
        self.sessions, self.owner = sessions, owner
        self.session: Session | None = None

    def saw(self, msg: Any) -> None:
        """A ``ForwardMsg`` the server sends this page."""
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.session = self.sessions._bind(msg.new_session.initialize.session_id, self)
            return
        session = self.session
        if session is None:
            return
        if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            if element.WhichOneof("type") == "file_uploader" and not element.file_uploader.disabled:
                uploader = element.file_uploader
                size = min(uploader.max_upload_size_mb * MiB, MAX_FILE_BYTES)
                files = FILES_PER_MULTIPLE_UPLOADER if uploader.multiple_files else 1
                session.shown[uploader.id] = (size, files)
        elif kind == "file_urls_response":
            session.issued.extend(u.file_id for u in msg.file_urls_response.file_urls)
        elif kind == "script_finished" and msg.script_finished in _whole_run_ended():
            session.finished, session.shown = session.shown, {}

    def closed(self) -> None:
        """The websocket closed: the session's files go with it."""
        self.sessions._ended(self)


@functools.cache
def _whole_run_ended() -> frozenset[int]:
    """A page's run ended (not a fragment's, not one cut short by a rerun)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    return frozenset({ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR})


def streamlit_files() -> Any:
    """The running Streamlit runtime's uploaded-file manager."""
    from streamlit.runtime import Runtime

    return Runtime.instance().uploaded_file_mgr


def size_text(size: int) -> str:
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size:,} bytes"
