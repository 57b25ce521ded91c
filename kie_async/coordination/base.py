"""The coordination seam: what every session on one Kie.ai account must share, whatever process it runs in.

Kie.ai counts its limits per account, not per process. Several workers (``uvicorn -w 4``) or machines on one
key must therefore share the ``createTask`` window, a 429's pause, callbacks (which land on any worker),
batch budgets, the batch journal and the upload cache. :class:`Coordinator` is that shared place; the
in-process one (:mod:`kie_async.coordination.local`) is the default and keeps everything in this process,
the Redis one (:mod:`kie_async.coordination.redis`) shares it across processes and machines.

Everything a coordinator stores is namespaced by a hash of the API key (never the key itself) plus an
optional prefix, so two accounts, or two deployments, never mix.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from kie_async.ledger.budget import CreditBudget
from kie_async.wire.api_models import UploadedFile

if TYPE_CHECKING:
    from kie_async.coordination.shared_journal import SharedJournal

TaskListener = Callable[[str], object]
AdoptionListener = Callable[[str, str], object]
"""Told ``(token, task_id)`` of a lost createTask answer that a receiver in any process confirmed."""
"""Told the task id of every verified callback, from whichever process received it."""

SpanListener = Callable[[str, str], object]
"""Told ``(task_id, traceparent)``: the span that handled ``task_id``'s callback, in whichever process."""

ResyncListener = Callable[[], object]
"""Told that task updates may have been missed (the shared channel was lost and is back): re-read everything."""

UPLOAD_REUSE_SECONDS = 2 * 24 * 3600.0
"""Kie.ai keeps uploads 3 days; a shared upload is reused for 2, so a reused URL never expires mid-task."""


def account_namespace(api_key: str | None, prefix: str = "") -> str:
    """``<prefix>kie:<sha256(key)[:16]>``: one namespace per account, without the key itself."""
    digest = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    return f"{prefix}kie:{digest}"


class SubmitWindow(ABC):
    """The account's ``createTask`` limit: an exact sliding window over every session on the key."""

    @abstractmethod
    def slot(self) -> AbstractAsyncContextManager[None]:
        """Held around one ``createTask``: waits for room in the window, counts the call from its answer."""

    @abstractmethod
    async def pause(self, seconds: float) -> None:
        """A 429 with ``Retry-After`` seen anywhere: every submitter on the account waits that long."""


class ReadLimit(ABC):
    """The account's read budget (status, credits, download links)."""

    @abstractmethod
    async def acquire(self) -> None:
        """Wait for one read."""


class Coordinator(ABC):
    """Where the sessions of one account meet. ``start`` before use, ``close`` after (a session does both)."""

    kind: str = "abstract"

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._listeners: list[TaskListener] = []
        self._adoption_listeners: list[AdoptionListener] = []
        self._resync_listeners: list[ResyncListener] = []
        self._span_listeners: list[SpanListener] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r})"

    async def start(self) -> None:  # noqa: B027 (optional hook: the local coordinator has nothing to connect)
        """Connect (and fail with a typed error naming the URL, without credentials, when that is impossible)."""

    async def close(self) -> None:  # noqa: B027
        """Let go of connections and background tasks."""

    # -- limits ---------------------------------------------------------------------------------------------

    _submit: SubmitWindow
    _read: ReadLimit

    @property
    def submit_window(self) -> SubmitWindow:
        """The shared ``createTask`` window (each implementation sets ``_submit``)."""
        return self._submit

    @property
    def read_limit(self) -> ReadLimit:
        """The shared read limit (each implementation sets ``_read``)."""
        return self._read

    # -- callbacks ------------------------------------------------------------------------------------------

    def add_task_listener(self, listener: TaskListener) -> None:
        """``listener(task_id)`` runs for every task update published by any process on the account (once)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def add_adoption_listener(self, listener: AdoptionListener) -> None:
        """``listener(token, task_id)`` runs for every confirmed lost-answer adoption published on the account."""
        if listener not in self._adoption_listeners:
            self._adoption_listeners.append(listener)

    def _tell_adoption(self, token: str, task_id: str) -> None:
        for listener in list(self._adoption_listeners):
            listener(token, task_id)

    async def publish_adoption(self, token: str, task_id: str) -> None:  # noqa: B027 (in-process: nothing to relay)
        """A receiver confirmed that ``task_id`` is the task a lost createTask answer hid (``token`` names the
        request and attempt): let the process that sent it, wherever it runs, settle it. In-process: nothing
        to relay (the session already looked at its own waiters)."""

    async def first_callback(self, task_id: str, timestamp: int, keep_seconds: float) -> bool:
        """Whether this signed ``(task id, timestamp)`` is new on the whole account (every receiver, every worker).

        In-process: always (each receiver's own :class:`~kie_async.wire.callbacks.CallbackReplayGuard` is the
        whole account's memory). Shared: remembered in the store for ``keep_seconds``.
        """
        del task_id, timestamp, keep_seconds
        return True

    async def settle_adoption(self, token: str, task_id: str) -> bool:
        """Record a confirmed adoption in the shared batch journal its token names (see ``CallbackReceiver``).

        In-process: nothing is shared (a file journal is settled by the receiver's ``journal=``).
        """
        del token, task_id
        return False

    async def announce_wait(self, task_id: str, traceparent: str, seconds: float) -> None:  # noqa: B027
        """A run of this process waits on ``task_id`` inside the span ``traceparent`` (W3C trace context: ids and
        flags, nothing secret): remember it for ``seconds`` so the span that handles the task's callback, in
        whichever process receives it, links to that run. In-process: nothing to share (the session knows its own
        waits)."""

    def add_span_listener(self, listener: SpanListener) -> None:
        """``listener(task_id, traceparent)`` runs for every callback span published on the account."""
        if listener not in self._span_listeners:
            self._span_listeners.append(listener)

    def _tell_span(self, task_id: str, traceparent: str) -> None:
        for listener in list(self._span_listeners):
            listener(task_id, traceparent)

    async def publish_callback_span(self, task_id: str, traceparent: str) -> None:  # noqa: B027
        """The span handling ``task_id``'s callback here: tell the processes waiting on it, so their wait's span
        links back to it (sent before the task update that wakes them). In-process: the session links its own."""

    async def waiting_spans(self, task_id: str) -> list[str]:
        """The ``traceparent`` of every run on the account that announced a wait on ``task_id`` (in-process:
        none beyond the session's own waits)."""
        del task_id
        return []

    def _tell_listeners(self, task_id: str) -> None:
        for listener in list(self._listeners):
            listener(task_id)

    def add_resync_listener(self, listener: ResyncListener) -> None:
        """``listener()`` runs when updates may have been lost (e.g. published while Redis was away)."""
        if listener not in self._resync_listeners:
            self._resync_listeners.append(listener)

    def _tell_resync(self) -> None:
        for listener in list(self._resync_listeners):
            listener()

    @abstractmethod
    async def publish_task_update(self, task_id: str) -> None:
        """A receiver verified a callback for ``task_id``: wake its waiters in every process."""

    # -- budgets --------------------------------------------------------------------------------------------

    @abstractmethod
    def budget(self, cap: float | None, *, batch_id: str | None = None) -> CreditBudget:
        """A batch budget; with ``batch_id`` (and a shared coordinator) every process on the batch shares it."""

    # -- batch journals -------------------------------------------------------------------------------------

    async def open_journal(self, batch_id: str, *, lease_seconds: float) -> SharedJournal | None:
        """The journal of ``batch_id`` shared by every process running it; ``None`` where nothing is shared."""
        del batch_id, lease_seconds  # in-process: run_many's journal is a file (or none)
        return None

    # -- uploads --------------------------------------------------------------------------------------------

    @abstractmethod
    async def find_upload(self, content_key: str) -> UploadedFile | None:
        """A file uploaded by any session on the account with this content (sha256), still safe to reuse."""

    @abstractmethod
    async def remember_upload(self, content_key: str, uploaded: UploadedFile) -> None:
        """Offer an upload for reuse (for :data:`UPLOAD_REUSE_SECONDS`)."""
