"""Every error kie-async raises, in one public home: catch :class:`KieError` for all of them.

The classes are defined in :mod:`kie_async.core.errors` (the foundation every layer imports), except
:class:`KieRequestBlockedError`, which lives beside the verdicts it carries in :mod:`kie_async.catalogue.blocked`;
this module is what users import, and it stays put when the layers move.
"""

from kie_async.catalogue.blocked import KieRequestBlockedError
from kie_async.core.errors import (
    KieAPIStatusError,
    KieAuthenticationError,
    KieBadRequestError,
    KieCallbackBodyError,
    KieCallbackVerificationError,
    KieConfigError,
    KieConnectionError,
    KieCoordinationError,
    KieDownloadContentError,
    KieDownloadError,
    KieDownloadTooLargeError,
    KieDownloadURLError,
    KieError,
    KieInputError,
    KieInsufficientCreditsError,
    KieJournalBusyError,
    KieJournalUnreadableError,
    KieNotFoundError,
    KieRateLimitError,
    KieResponseShapeError,
    KieServerError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
    KieUsageLimitError,
    KieValidationError,
)

__all__ = [
    "KieAPIStatusError",
    "KieAuthenticationError",
    "KieBadRequestError",
    "KieCallbackBodyError",
    "KieCallbackVerificationError",
    "KieConfigError",
    "KieConnectionError",
    "KieCoordinationError",
    "KieDownloadContentError",
    "KieDownloadError",
    "KieDownloadTooLargeError",
    "KieDownloadURLError",
    "KieError",
    "KieInputError",
    "KieInsufficientCreditsError",
    "KieJournalBusyError",
    "KieJournalUnreadableError",
    "KieNotFoundError",
    "KieRateLimitError",
    "KieRequestBlockedError",
    "KieResponseShapeError",
    "KieServerError",
    "KieSubmissionUncertainError",
    "KieTaskFailedError",
    "KieTimeoutError",
    "KieUsageLimitError",
    "KieValidationError",
]
