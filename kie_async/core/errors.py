"""Typed errors: every failure a caller can see is a ``KieError`` that says what happened and what to do.

The hierarchy mirrors how callers react, not how the server phrases things: retry later (rate limit,
server, connection, timeout), fix the request (validation), fix the account (auth, credits), or give up
on this task (task failure). Kie.ai often returns errors inside an HTTP 200 envelope, so the class is
chosen from the envelope ``code`` first and the HTTP status second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self


class KieError(Exception):
    """Root of every error raised by kie-async."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def with_hint(self, hint: str) -> Self:
        """The same error with another hint (``str()`` follows), for a layer that knows the better fix."""
        self.hint = hint
        self.args = (self._render(),)
        return self


def _one_line(text: str) -> str:
    """A server's message may hold newlines; ``str(error)`` stays one line for logs and the CLI."""
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


class KieConfigError(KieError):
    """The SDK is configured in a way that cannot work (missing key, bad URL, live use not opted in)."""

    hint = "check KieSettings / the KIE_* environment variables"


class KieInputError(KieError, ValueError):
    """A value passed to the SDK cannot work (missing file, wrong kind); nothing was sent."""

    hint = "fix the named input"


class KieConnectionError(KieError):
    """The server could not be reached or the connection broke mid-request."""

    hint = "check the network or base URL; reads are retried automatically"

    def __init__(self, message: str, *, request_sent: bool = True, hint: str | None = None) -> None:
        self.request_sent = request_sent
        super().__init__(message, hint=hint)


class KieSubmissionUncertainError(KieConnectionError):
    """createTask may have reached the server before the connection failed; it is never retried blindly."""

    hint = (
        "the task may exist and credits may be spent: check the Kie.ai dashboard logs or wait for the callback "
        "before submitting again"
    )


class KieTimeoutError(KieError):
    """A request or a wait took longer than its deadline."""

    hint = "raise the timeout in KieSettings or pass timeout=... to the call"

    def __init__(self, message: str, *, request_sent: bool = True, hint: str | None = None) -> None:
        self.request_sent = request_sent
        super().__init__(message, hint=hint)


class KieAPIStatusError(KieError):
    """The API answered with a non-success code (from the envelope or the HTTP status).

    It keeps the evidence for a bug report: ``body`` (the answer as text, capped at 4 KiB), ``headers`` (the
    response headers), ``request_id`` (if a gateway sent one), ``endpoint`` and ``task_id`` (when the call
    was about one task). Cookies, credentials and the API key are cut out of all of them; ``str()`` stays
    one line with the hint.
    """

    hint = "see the message from Kie.ai"

    def __init__(
        self,
        message: str,
        *,
        code: int,
        http_status: int | None = None,
        endpoint: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        enveloped: bool = True,
        task_id: str | None = None,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.code = code
        self.http_status = http_status
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.enveloped = enveloped
        """False when the body was not a Kie.ai envelope (a proxy or gateway page): not the provider's word."""
        self.task_id = task_id
        self.body = body
        """The response body as text (secrets cut out, capped at 4 KiB); None when no response was read."""
        self.headers: dict[str, str] = dict(headers or {})
        """The response headers, cookies and credentials replaced by ``[redacted]``."""
        self.request_id = request_id
        super().__init__(_one_line(message), hint=hint)

    def _render(self) -> str:
        where = f" on {self.endpoint}" if self.endpoint else ""
        task = f" (task {self.task_id})" if self.task_id and self.task_id not in self.message else ""
        request = f" [request id {self.request_id}]" if self.request_id else ""
        base = f"Kie.ai returned code {self.code}{where}{task}: {self.message}{request}"
        return f"{base} — {self.hint}" if self.hint else base


class KieBadRequestError(KieAPIStatusError):
    """400: a parameter is missing or malformed."""

    hint = "fix the named parameter; run validate_request() before submitting"


class KieAuthenticationError(KieAPIStatusError):
    """401: the API key is missing, wrong or revoked."""

    hint = "set a valid key in KIE_API_KEY (kie.ai → API keys); it is never logged"


class KieInsufficientCreditsError(KieAPIStatusError):
    """402: the account has too few credits for this task."""

    hint = "top up credits at kie.ai, or lower resolution/duration; estimate_request_cost() shows the price"


class KieNotFoundError(KieAPIStatusError):
    """404: the task, file or endpoint does not exist."""

    hint = "check the task id / URL; generated files are deleted after 14 days"


class KieValidationError(KieAPIStatusError):
    """422: the server rejected the request (also: unknown task id, outside URL for download-url)."""

    hint = "check the field values against the model spec; unknown task ids also answer 422"


class KieRateLimitError(KieAPIStatusError):
    """429: too many requests; Kie.ai drops (does not queue) requests over its limit."""

    hint = "slow down; the session's rate limiter and retries handle this for reads"


class KieUsageLimitError(KieAPIStatusError):
    """433: a sub-key went over its usage cap."""

    hint = "raise the key's usage cap in the Kie.ai dashboard or use another key"


class KieServerError(KieAPIStatusError):
    """5xx, 408 and 455: the service is failing or in maintenance."""

    hint = "retry later; idempotent reads are retried automatically"


class KieResponseShapeError(KieServerError):
    """A success answer whose body cannot be read as what the endpoint promises.

    Not JSON, no envelope, an envelope ``code`` that is not a number, a ``recordInfo`` that is not an object
    or names another task. A read that met this may be repeated (it is retried like a 5xx); the task id the
    caller asked about is kept in ``task_id``.
    """

    hint = "Kie.ai answered in a shape the SDK cannot read; reads are retried, and the task (if any) is unaffected"

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None = None,
        code: int = 502,
        http_status: int | None = 200,
        endpoint: str | None = None,
        hint: str | None = None,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            http_status=http_status,
            endpoint=endpoint,
            hint=hint,
            task_id=task_id,
            body=body,
            headers=headers,
            request_id=request_id,
        )

    def _render(self) -> str:
        where = f" on {self.endpoint}" if self.endpoint else ""
        request = f" [request id {self.request_id}]" if self.request_id else ""
        base = f"unreadable answer from Kie.ai{where}: {self.message}{request}"
        return f"{base} — {self.hint}" if self.hint else base


class KieTaskFailedError(KieError):
    """The task ran and ended in state ``fail``; credits may or may not have been charged."""

    hint = "read fail_code/fail_msg; adjust the prompt or inputs and submit a new task"

    def __init__(self, task_id: str, fail_code: str | None, fail_msg: str | None, *, hint: str | None = None) -> None:
        self.task_id = task_id
        self.fail_code = fail_code
        self.fail_msg = fail_msg
        super().__init__(f"task {task_id} failed (failCode={fail_code!r}): {fail_msg or 'no message'}", hint=hint)


class KieDownloadError(KieError):
    """A download finished short, long or broken; nothing was left at the destination."""

    hint = "retry the download; download-url links last 20 minutes, files 14 days"
    retryable: bool = True
    """Whether the same download may succeed if tried again (the retry policy reads this)."""


class KieDownloadContentError(KieDownloadError):
    """The file host answered 200, but the body is not the output (empty, an error page, the wrong kind)."""

    hint = (
        "the file host sent something other than the output (often a transient error page); it was retried and "
        "no file was kept: try again later or fetch a fresh link with get_download_url()"
    )


class KieDownloadURLError(KieDownloadError):
    """The URL can never be downloaded (not http(s), no host, unparsable); refused before any request."""

    hint = "only http(s) URLs can be downloaded; check where the URL came from (the task's resultUrls?)"
    retryable = False


class KieDownloadTooLargeError(KieDownloadError):
    """An output passed its size cap (a body with no end: a header, then zeros until the disk is full)."""

    hint = (
        "nothing was kept; if the output really is that large, raise KieSettings.max_output_bytes for its kind "
        "and resume the task on its id"
    )
    retryable = False


class KieJournalBusyError(KieError):
    """A batch journal already has an owner (another process, or another batch in this one)."""

    hint = "wait for the other run to finish, or use another journal file"


class KieJournalUnreadableError(KieInputError):
    """A journal (or ledger) has unreadable lines besides a torn last one: what was bought cannot be known.

    Raised before anything is bought. ``path`` and ``lines`` say where; only a cut-off record from a crash is
    skipped silently, so a re-encoded or damaged file never reads as "nothing bought yet".
    """

    def __init__(self, message: str, *, hint: str | None = None, path: str, lines: list[int]) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.lines = list(lines)


class KieCoordinationError(KieError):
    """The shared coordination store (Redis) cannot be reached or used; nothing was bought because of it."""

    hint = "check that Redis is running and KIE_COORDINATION_URL points at it"


class KieCallbackVerificationError(KieError):
    """A callback's signature or timestamp did not check out."""

    hint = "check the webhook HMAC key; reject the request"


class KieCallbackBodyError(KieCallbackVerificationError):
    """A callback body is too large, nested too deeply, not a JSON object, or names no single task id."""

    hint = "answer 400; a genuine Kie.ai callback is a small JSON object naming its task"


_CODE_TO_CLASS: dict[int, type[KieAPIStatusError]] = {
    400: KieBadRequestError,
    401: KieAuthenticationError,
    402: KieInsufficientCreditsError,
    403: KieAuthenticationError,
    404: KieNotFoundError,
    408: KieServerError,
    422: KieValidationError,
    429: KieRateLimitError,
    433: KieUsageLimitError,
    455: KieServerError,
}


def error_class_for_code(code: int) -> type[KieAPIStatusError]:
    """Pick the error class for a Kie.ai envelope code or HTTP status."""
    if code in _CODE_TO_CLASS:
        return _CODE_TO_CLASS[code]
    if code >= 500:
        return KieServerError
    return KieAPIStatusError


def is_retryable_code(code: int) -> bool:
    """Codes where the same request may succeed later without changes."""
    return code in (408, 429, 455) or (code >= 500 and code not in (501, 505))
