"""kie-async: an asyncio-native client SDK for Kie.ai.

Everything a user needs is importable from here; modules not re-exported are private by convention.
"""

from kie_async._version import __version__
from kie_async.api_models import (
    CallbackEvent,
    CreateTaskPayload,
    CreditBalance,
    DownloadResult,
    TaskCreated,
    TaskRecord,
    TaskResult,
    TaskState,
    UploadedFile,
)
from kie_async.callbacks import sign_callback, verify_callback_signature
from kie_async.errors import (
    KieAPIStatusError,
    KieAuthenticationError,
    KieBadRequestError,
    KieCallbackVerificationError,
    KieConfigError,
    KieConnectionError,
    KieDownloadError,
    KieError,
    KieInputError,
    KieInsufficientCreditsError,
    KieNotFoundError,
    KieRateLimitError,
    KieServerError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
    KieUsageLimitError,
    KieValidationError,
)
from kie_async.polling import TaskProgress
from kie_async.retry import RetryPolicy
from kie_async.session import KieSession, SessionStats
from kie_async.settings import KieSettings, PollSettings, RateLimitSettings, RetrySettings

__all__ = [
    "CallbackEvent",
    "CreateTaskPayload",
    "CreditBalance",
    "DownloadResult",
    "KieAPIStatusError",
    "KieAuthenticationError",
    "KieBadRequestError",
    "KieCallbackVerificationError",
    "KieConfigError",
    "KieConnectionError",
    "KieDownloadError",
    "KieError",
    "KieInputError",
    "KieInsufficientCreditsError",
    "KieNotFoundError",
    "KieRateLimitError",
    "KieServerError",
    "KieSession",
    "KieSettings",
    "KieSubmissionUncertainError",
    "KieTaskFailedError",
    "KieTimeoutError",
    "KieUsageLimitError",
    "KieValidationError",
    "PollSettings",
    "RateLimitSettings",
    "RetryPolicy",
    "RetrySettings",
    "SessionStats",
    "TaskCreated",
    "TaskProgress",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "UploadedFile",
    "__version__",
    "sign_callback",
    "verify_callback_signature",
]
