"""The error ``submit`` raises when validation or the preflight gate refuses a request before anything is bought.

It lives beside the verdicts it carries (:class:`~kie_async.catalogue.request_models.ValidationResult`,
:class:`~kie_async.catalogue.preflight.PreflightResult`) rather than in :mod:`kie_async.core.errors`, so the
foundation never names the catalogue. Users import it from :mod:`kie_async.errors` or ``kie_async``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kie_async.core.errors import KieInputError

if TYPE_CHECKING:
    from kie_async.catalogue.preflight import PreflightResult
    from kie_async.catalogue.request_models import ValidationResult


class KieRequestBlockedError(KieInputError):
    """``submit`` stopped a request before anything was bought: validation or the preflight gate said no.

    ``validation`` / ``preflight`` (when reached) carry the full verdict; the message names each field or
    reason with its fix.
    """

    hint = "fix what the message names (validate_request / run_preflight show the same verdict); nothing was spent"

    def __init__(
        self,
        message: str,
        *,
        validation: ValidationResult | None = None,
        preflight: PreflightResult | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.validation = validation
        self.preflight = preflight
