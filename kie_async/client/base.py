"""``BaseSession``: the HTTP client to Kie.ai that the pipeline stages are written against.

It holds the parts that do the work, each in its own module: the request path
(:mod:`~kie_async.client.request_path`: auth, envelope, errors, retries, credits, createTask, recordInfo),
waiting (:mod:`~kie_async.client.waiting`), callback adoption (:mod:`~kie_async.client.adoption`) and files
(:mod:`~kie_async.client.files`). The methods users call stay here with their signatures and delegate. The
front object users open, :class:`kie_async.session.KieSession`, adds what is built from the pipeline (task
handles, ``create_and_wait``, readable outputs); the pipeline takes a ``BaseSession``, so it never imports the
front and there is no circle between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import aiohttp

from kie_async.client.adoption import AdoptionDesk, AdoptionSink
from kie_async.client.connection import SessionStats
from kie_async.client.files import Files
from kie_async.client.options import SessionOptions, options_with
from kie_async.client.request_path import RequestPath, UnsentHook, WireHook
from kie_async.client.shared import SharedState
from kie_async.client.upgrades import fetch_upgrade_url
from kie_async.client.waiting import Waiter
from kie_async.coordination import Coordinator
from kie_async.core import telemetry
from kie_async.core.errors import KieInputError
from kie_async.core.limits import check_timeout
from kie_async.core.logs import setup_logging_from_env
from kie_async.core.media_sniff import MediaKind
from kie_async.core.settings import KieSettings, PollSettings
from kie_async.wire.api_models import (
    CreateTaskPayload,
    CreditBalance,
    DownloadResult,
    JSONValue,
    TaskCreated,
    TaskRecord,
    UploadedFile,
)
from kie_async.wire.polling import ProgressCallback
from kie_async.wire.retry import RetryPolicy
from kie_async.wire.task_apis import TransportSpec

T = TypeVar("T")

_ASSEMBLED = frozenset({"_options", "_shared", "_owner", "_requests", "_waiter", "_desk", "_files"})
"""What ``BaseSession._assemble`` sets: per session or view; every other instance attribute a view shares."""


class BaseSession:
    """Async client for Kie.ai (or the local emulator); users open :class:`kie_async.session.KieSession`."""

    def __init__(
        self,
        settings: KieSettings | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        http_session: aiohttp.ClientSession | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        """``http_session`` / ``connector``: send through your own aiohttp pool; it is never closed by the session
        (see :mod:`kie_async.wire.transport`)."""
        setup_logging_from_env()
        settings = settings if settings is not None else KieSettings.from_env()
        options = SessionOptions(settings, retry_policy or RetryPolicy(settings.retry))
        shared = SharedState.create(settings, http_session=http_session, connector=connector)
        self._assemble(options, shared, owner=True)

    def _assemble(self, options: SessionOptions, shared: SharedState, *, owner: bool) -> None:
        """Build this session's parts over ``shared``; ``owner`` is the session that opens and closes the pool."""
        self._options = options
        self._shared = shared
        self._owner = owner
        self._requests = RequestPath(options, shared.connection, shared.stats, shared.task_apis)
        self._waiter = Waiter(options, self._requests, self._read_task, shared.waits)
        self._desk = AdoptionDesk(
            self._requests, self._read_task, shared.connection, shared.adoptions, self._other_transports
        )
        self._files = Files(
            options, self._requests, shared.connection, shared.stats, shared.uploads, self._download_link
        )

    async def _read_task(self, task_id: str, *, transport: TransportSpec | None = None) -> TaskRecord:
        """The parts' status read: through ``self.get_task``, so an override (a subclass, a test) applies."""
        return await self.get_task(task_id, transport=transport)

    async def _download_link(self, url: str) -> str:
        """The files part's download-link request: through ``self.get_download_url``, for the same reason."""
        return await self.get_download_url(url)

    async def _other_transports(self) -> Iterable[TransportSpec]:
        """The separate APIs a callback's task may live on when this process did not buy it.

        The client knows none of them (they are described by the model specs in the catalogue, above the
        client); the front :class:`~kie_async.session.KieSession` supplies them.
        """
        return ()

    @property
    def settings(self) -> KieSettings:
        return self._options.settings

    @settings.setter
    def settings(self, value: KieSettings) -> None:
        self._options.settings = value  # the parts read it from the shared options object

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._options.retry_policy

    @retry_policy.setter
    def retry_policy(self, value: RetryPolicy) -> None:
        self._options.retry_policy = value

    @property
    def stats(self) -> SessionStats:
        """What this session and its views actually sent (one set of counters)."""
        return self._shared.stats

    def __repr__(self) -> str:
        state = "open" if self._shared.connection.is_open else "closed"
        text = f"KieSession(base_url={self.settings.base_url!r}, {state})"
        return text if self._owner else f"{text}.with_options(...)"

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the connection pool in the running loop; refuses the real Kie.ai unless live use was opted into.

        Opening again in the same loop does nothing; from another loop while still open it raises
        :class:`KieConfigError` (close it first). A closed session reopens in any loop. A view (from
        :meth:`with_options`) opens nothing: it uses its session's pool (open that session).
        """
        if self._owner:
            await self._shared.connection.open(self.settings, self._listen)

    def _listen(self, coordinator: Coordinator) -> None:
        """Hear, from the other sessions on the account, of task updates, adoptions and lost callbacks."""
        coordinator.add_task_listener(self._waiter.wake)
        coordinator.add_adoption_listener(self._desk.relayed)
        coordinator.add_resync_listener(self._waiter.wake_all)
        coordinator.add_span_listener(self._waiter.link_callback)

    async def close(self) -> None:
        """Cancel uploads still in flight, then close the connection pool (never one the caller brought).

        From another loop than the one that opened it, only a pool whose loop has ended can be let go of
        (its connections cannot be awaited any more); while that loop runs, close it from there. Closing a
        view closes nothing: the pool, limiters and caches belong to the session it came from.
        """
        if not self._owner:
            return
        connection = self._shared.connection
        ended = connection.loop_ended()
        if ended:
            # The loop that opened it has ended, and its tasks and connections with it: forget them.
            self._desk.forget_all()
            self._waiter.forget_waiters()
        else:
            self._desk.cancel_all()
            await self._files.cancel_uploads()
        await connection.close_pool(ended=ended)
        self._files.forget_uploads()
        await connection.close_coordinator(self.settings, ended=ended)

    def with_options(
        self, *, timeout: float | None = None, max_retries: int | None = None, poll: PollSettings | None = None
    ) -> Self:
        """This session with other defaults for the calls made through it; everything else is shared.

        ``timeout``: seconds per API request; ``max_retries``: retries of a failed read (0 = none);
        ``poll``: ``wait_for_task``'s schedule and deadline. The returned session shares this one's pool,
        rate limiters, coordination, caches, callback waiters and stats (see :mod:`kie_async.client.shared`),
        so two views together still keep Kie.ai's limits; closing a view closes nothing.
        """
        options = options_with(self._options, timeout=timeout, max_retries=max_retries, poll=poll)
        cls = type(self)
        view = cls.__new__(cls)  # not __init__: a view builds no state of its own
        # A subclass's own attributes (set in its __init__) are the same objects on the view.
        view.__dict__.update({k: v for k, v in vars(self).items() if k not in _ASSEMBLED})
        view._assemble(options, self._shared, owner=False)
        return view

    @property
    def http(self) -> aiohttp.ClientSession:
        return self._shared.connection.checked_http()

    @property
    def coordinator(self) -> Coordinator:
        """Where this session meets the others on the same account (in-process unless ``coordination_url``)."""
        return self._shared.connection.coordinator

    # -- the seams the pipeline's output streaming sends through (kie_async.pipeline.outputs) --------------

    def _send(
        self, method: str, url: str, *, endpoint: str, timeout: aiohttp.ClientTimeout
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """One request on the session's pool, failures as typed errors (see :meth:`RequestPath.send`)."""
        return self._requests.send(method, url, endpoint=endpoint, timeout=timeout)

    async def _with_retries(self, op: Callable[[], Awaitable[T]], *, idempotent: bool, what: str) -> T:
        return await self._requests.with_retries(op, idempotent=idempotent, what=what)

    @property
    def _download_slots(self) -> asyncio.Semaphore:
        return self._shared.connection.download_slots()

    @property
    def _upload_cache(self) -> dict[str, asyncio.Future[UploadedFile]]:
        """Uploads in flight or done, by content key (read by tests)."""
        return self._shared.uploads.cache

    @property
    def _wakeups(self) -> dict[str, set[asyncio.Event]]:
        """The waits on each task (read by tests)."""
        return self._shared.waits.wakeups

    # -- account and tasks ---------------------------------------------------------------------------------

    async def get_credits(self, *, timeout: float | None = None) -> CreditBalance:
        """Remaining credits on the account."""
        return await self._requests.get_credits(timeout=timeout)

    async def get_pricing_records(
        self, *, page_size: int = 100, timeout: float | None = None
    ) -> list[dict[str, JSONValue]]:
        """Every row of the pricing API behind kie.ai/pricing (undocumented; facts file section 1), page by page.

        Read-only and free, so retried like any read. The row count comes from ``/count``; paging stops at
        ``PRICING_MAX_PAGES`` so a server that always claims more cannot keep the SDK looping.
        """
        return await self._requests.get_pricing_records(page_size=page_size, timeout=timeout)

    async def create_task(
        self,
        payload: CreateTaskPayload | None = None,
        *,
        model: str | None = None,
        input: dict[str, JSONValue] | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        on_wire: WireHook | None = None,
        on_unsent: UnsentHook | None = None,
        transport: TransportSpec | None = None,
        validate: bool = True,
    ) -> TaskCreated:
        """Submit a generation task. Spends credits, so it is never retried once the body may have arrived.

        ``validate`` checks the body against the model's spec first, where the session knows one (the public
        :class:`~kie_async.session.KieSession` does; a mistyped option key was bought as is): a problem raises
        :class:`KieInputError` and nothing is sent. ``validate=False`` sends the body as it is.

        Raises :class:`KieSubmissionUncertainError` when the request may have reached Kie.ai but no usable
        answer came back (a reset, a timeout, a gateway error page): a task may exist, so nothing is retried.
        Any other :class:`KieError` is a definite "no": nothing was bought. ``on_wire`` / ``on_unsent`` are
        the journal's seams (see :meth:`RequestPath.api`). ``transport`` (or ``payload.transport``, set from
        the model spec) names the API that sells the model; the default is the market ``createTask``. The
        session remembers it per task id, so ``get_task``/``wait_for_task`` on that id read the matching path.
        """
        check_timeout("timeout", timeout)
        if payload is None:
            if not model or input is None:
                raise KieInputError("create_task needs a CreateTaskPayload or model= and input=")
            payload = CreateTaskPayload(model=model, input=input, callback_url=callback_url, transport=transport)
        elif transport is not None:
            payload = payload.model_copy(update={"transport": transport})
        if validate:
            await self._check_body(payload)
        created = await self._requests.create_task(payload, timeout=timeout, on_wire=on_wire, on_unsent=on_unsent)
        self.remember_transport(created.task_id, payload.api)
        return created

    async def _check_body(self, payload: CreateTaskPayload) -> None:
        """Refuse a body the model's spec would refuse; the base session knows no models, so it passes all."""
        del payload

    def remember_transport(self, task_id: str, transport: TransportSpec | None) -> None:
        """Read ``task_id`` through ``transport`` from now on (``create_task`` does this; a resume may too)."""
        self._requests.remember_transport(task_id, transport)

    async def get_task(
        self, task_id: str, *, timeout: float | None = None, transport: TransportSpec | None = None
    ) -> TaskRecord:
        """One status read of a task (``recordInfo``, or the status path of the task's ``transport``).

        Without ``transport`` the one this session bought the task through is used, else the market's.
        """
        return await self._requests.get_task(task_id, timeout=timeout, transport=transport)

    async def get_upgrade_url(
        self,
        task_id: str,
        name: str,
        *,
        index: int = 0,
        timeout: float | None = None,
        transport: TransportSpec | None = None,
        every: float | None = None,
    ) -> str:
        """The URL of a finished task's ``name`` version (Veo's ``"1080p"``) of output ``index``.

        The task's transport spec says where to ask (``transport.upgrades``); the endpoint answers not-ready
        until the file is made (about 1-3 minutes for Veo's 1080P), so this asks again every ``retry_seconds``
        of the spec (or ``every``) until ``timeout`` (600 s). Asking spends nothing; an unknown task, one that
        did not succeed, or a bad key ends it at once.
        """
        return await fetch_upgrade_url(
            self._requests, task_id, name, index=index, timeout=timeout, transport=transport, every=every
        )

    async def wait_for_task(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        raise_on_failure: bool = True,
        callback_driven: bool = False,
        poll: PollSettings | None = None,
        transport: TransportSpec | None = None,
        first_poll_after: float | None = None,
    ) -> TaskRecord:
        """Poll until the task succeeds or fails.

        Polls fast first, then slower (``PollSettings.schedule``). With ``callback_driven=True`` a callback
        receiver is expected to call :meth:`notify_task_update`, and polling drops to a slow safety net.
        Cancelling the awaiting task stops polling at once; the task itself keeps running on Kie.ai.
        ``transport`` is the API the task was bought through (see :meth:`get_task`).
        ``first_poll_after`` delays the first read of a task just created (see :meth:`first_poll_delay`); a
        callback still wakes the wait early. Every successful record teaches the session its model's time.
        """
        return await self._waiter.wait_for_task(
            task_id,
            timeout=timeout,
            on_progress=on_progress,
            raise_on_failure=raise_on_failure,
            callback_driven=callback_driven,
            poll=poll,
            transport=transport,
            first_poll_after=first_poll_after,
        )

    def notify_task_update(self, task_id: str) -> bool:
        """Wake every ``wait_for_task`` waiting on ``task_id`` in this process (a callback receiver calls it)."""
        return self._waiter.wake(task_id)

    async def publish_task_update(self, task_id: str) -> None:
        """Wake ``task_id``'s waiters in every process on the account (through the coordinator).

        Called inside a traced callback's span, the waits' spans link back to it (here and, first, elsewhere)."""
        traceparent = telemetry.traceparent()
        if traceparent is not None:
            self._waiter.link_callback(task_id, traceparent)
        self._waiter.wake(task_id)
        coordinator = self._shared.connection.coordinator
        if coordinator.kind != "local":
            if traceparent is not None:  # before the update: a waiter links, then wakes
                await coordinator.publish_callback_span(task_id, traceparent)
            await coordinator.publish_task_update(task_id)

    async def waiting_spans(self, task_id: str) -> list[str]:
        """The W3C ``traceparent`` of every traced run waiting on ``task_id``: this session's, and with a shared
        coordinator those of every process on the account (what a callback's span links to)."""
        found = self._waiter.waiting_spans(task_id)
        coordinator = self._shared.connection.coordinator
        if coordinator.kind != "local":
            found += [value for value in await coordinator.waiting_spans(task_id) if value not in found]
        return found

    def first_poll_delay(self, model: str | None, typical_seconds: float | None = None) -> float:
        """The wait before the first status read of a task of ``model`` just created.

        Seeded from the model's typical generation time (``typical_seconds``, from its spec) and replaced by
        what this session has seen that model take (provider-reported, averaged), so a task that is done on its
        first read costs one status request instead of the 2 an immediate read plus the schedule's first step
        cost. Capped by ``PollSettings.first_poll_max``; after the first read the schedule applies unchanged.
        """
        return self._waiter.first_poll_delay(model, typical_seconds)

    # -- correlated callbacks: settling an uncertain createTask -----------------------------------------------

    def expect_adoption(self, token: str, *, transport: TransportSpec | None = None) -> asyncio.Future[str]:
        """A future that resolves with the task id a verified callback carrying ``token`` names.

        Kie.ai has no idempotency key, so after a lost createTask answer only the task's own callback can
        tell which task (if any) the request created; the pipeline waits on this future. ``transport`` is
        the API the lost request went to: the adoption is confirmed by reading the task there.
        """
        return self._desk.expect(token, transport=transport)

    def forget_adoption(self, token: str, *, late: AdoptionSink | None = None) -> None:
        """Stop waiting for ``token``; with ``late``, a callback that still arrives is handed to it instead.

        Late sinks live as long as the session (the most recent 10,000), so a long-running web process that
        receives the callback hours later still settles the request in its journal.
        """
        self._desk.forget(token, late=late)

    def attach_callback_receiver(self) -> None:
        """Say a receiver in this process feeds callbacks to this session (so a lost answer is worth awaiting)."""
        self._desk.attach_receiver()

    @property
    def receives_callbacks(self) -> bool:
        return self._desk.receives_callbacks

    async def adopt_task(self, token: str, task_id: str, *, fallback: AdoptionSink | None = None) -> bool:
        """Called by a callback receiver for a callback whose URL carried ``token``.

        The token sits in the (unsigned) URL query, so it is confirmed against the provider before anything
        is adopted: the task's own recorded request (``recordInfo`` ``param.callBackUrl``) must carry it.
        Returns whether the task was adopted.
        """
        return await self._desk.adopt(token, task_id, fallback=fallback)

    # -- files ---------------------------------------------------------------------------------------------

    async def get_download_url(self, url: str, *, timeout: float | None = None, task_id: str | None = None) -> str:
        """A 20-minute download link for a Kie.ai-generated file URL (outside URLs answer 422).

        ``task_id``: the task that made the file. For a task this session bought on an API with its own
        download-url endpoint (4o Image's ``/api/v1/gpt4o-image/download-url``) that endpoint is asked."""
        return await self._files.get_download_url(url, timeout=timeout, task_id=task_id)

    async def download(
        self,
        url: str,
        dest: str | Path,
        *,
        via_download_url: bool = False,
        timeout: float | None = None,
        expect_kind: MediaKind | None = None,
        name_from_content: bool = False,
    ) -> DownloadResult:
        """Stream ``url`` to ``dest`` atomically (temp file + size and content checks + rename); retried from scratch.

        ``expect_kind`` ("image", "video", "audio") makes a 200 answer that is not that media (empty, an HTML
        page, a header that does not read) a retryable :class:`KieDownloadContentError` that leaves no file.
        ``name_from_content`` gives the saved file the extension of what was received (``dest.with_suffix``),
        so a server URL ending in ``.sh`` cannot name it; the result's ``destination_path`` says where it
        landed. A URL that can never be fetched (``ftp://``, ``file://``, no host) raises
        :class:`KieDownloadURLError` before any request and is not retried.
        """
        return await self._files.download(
            url,
            dest,
            via_download_url=via_download_url,
            timeout=timeout,
            expect_kind=expect_kind,
            name_from_content=name_from_content,
        )

    async def upload_once(
        self, content_key: str, upload: Callable[[], Awaitable[UploadedFile]]
    ) -> tuple[UploadedFile, bool]:
        """Upload identical content (same ``content_key``, e.g. a sha256) once per session, or once per account.

        Returns the hosted file and whether it was reused. Concurrent callers share one in-flight upload; a
        failed upload is forgotten so a later call retries; when the last caller waiting on an in-flight
        upload is cancelled, the upload is cancelled too. With a shared coordinator, a file another process
        uploaded recently (well within Kie.ai's 3-day upload lifetime) is reused instead.
        """
        return await self._files.upload_once(content_key, upload)

    async def upload_file(
        self, path: str | Path, *, upload_path: str | None = None, file_name: str | None = None
    ) -> UploadedFile:
        """Upload a local file with the stream endpoint (no size limit, flat memory)."""
        return await self._files.upload_file(path, upload_path=upload_path, file_name=file_name)

    async def upload_bytes(
        self, data: bytes, filename: str, *, upload_path: str | None = None, content_type: str | None = None
    ) -> UploadedFile:
        """Upload in-memory bytes: base64 JSON up to 10 MB, the stream endpoint above (Kie.ai's advice)."""
        return await self._files.upload_bytes(data, filename, upload_path=upload_path, content_type=content_type)

    async def upload_url(
        self, url: str, *, upload_path: str | None = None, file_name: str | None = None
    ) -> UploadedFile:
        """Have Kie.ai fetch a remote file (it gives up after 30 s) and host it for model inputs."""
        return await self._files.upload_url(url, upload_path=upload_path, file_name=file_name)
