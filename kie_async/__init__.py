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
from kie_async.artifacts import (
    ArtifactDerivativeSettings,
    ArtifactKind,
    ArtifactSettings,
    ArtifactSource,
    AssetRef,
    IndexEntry,
    KieArtifactError,
    PromptRecord,
    ProviderTrace,
    RunArtifact,
    RunArtifactCreateRequest,
    RunManifest,
    RunStatus,
    create_run_artifact,
    generate_derivatives,
    get_latest_assets,
    get_latest_successful_run,
    list_recent_runs,
    load_run,
    print_run_summary,
    query_runs,
    read_index,
    rebuild_artifact_index,
    regenerate_run_derivatives,
    update_run_notes,
    update_run_tags,
)
from kie_async.budget import CreditBudget
from kie_async.callback_receiver import CallbackReceiver, add_callback_route
from kie_async.callbacks import (
    KIE_REQUEST_PARAM,
    CallbackReplayGuard,
    request_token_from_url,
    sign_callback,
    verify_callback,
    verify_callback_signature,
)
from kie_async.errors import (
    KieAPIStatusError,
    KieAuthenticationError,
    KieBadRequestError,
    KieCallbackBodyError,
    KieCallbackVerificationError,
    KieConfigError,
    KieConnectionError,
    KieDownloadContentError,
    KieDownloadError,
    KieDownloadURLError,
    KieError,
    KieInputError,
    KieInsufficientCreditsError,
    KieJournalBusyError,
    KieNotFoundError,
    KieRateLimitError,
    KieRequestBlockedError,
    KieResponseShapeError,
    KieServerError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
    KieUsageLimitError,
    KieValidationError,
)
from kie_async.fanout import BatchProgress, run_many
from kie_async.fixtures import REQUEST_FIXTURES, get_request_fixture
from kie_async.handle import TaskHandle, TaskOutcome
from kie_async.model_data import preload_model_data
from kie_async.normalize import normalize_request
from kie_async.outputs import FileOutput
from kie_async.payload import (
    MediaNotUploadedError,
    RequestNotReadyError,
    build_submission_payload,
    check_wire_payload,
    media_needing_upload,
    with_hosted_media,
)
from kie_async.pipeline import PipelineHooks, PipelineOptions, RunOutput, RunResult, StageOutcome, run_pipeline
from kie_async.polling import TaskProgress
from kie_async.preflight import CreditSource, PreflightResult, PreflightThresholds, run_preflight
from kie_async.prepare import PreparedRequest, prepare_request_for_submission
from kie_async.presets import (
    PromptContext,
    PromptEnhancementPreview,
    apply_enhanced_prompt,
    dry_run_prompt_enhancement,
    resolve_prompt_context,
)
from kie_async.pricing import CostEstimate, estimate_request_cost, estimate_wire_cost
from kie_async.request_models import MediaInput, NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.request_state import RequestState
from kie_async.retry import RetryPolicy
from kie_async.session import KieSession, SessionStats
from kie_async.settings import KieSettings, PollSettings, RateLimitSettings, RetrySettings
from kie_async.specs import aload_registry, load_registry
from kie_async.submit import download_output_file, get_credit_balance, submit_prepared_request, wait_for_task
from kie_async.validate import validate_request


def __getattr__(name: str) -> object:
    """The emulator (and its pyvips/aiohttp.web imports) loads only when asked for."""
    if name in ("KieEmulator", "EmulatorConfig"):
        from kie_async import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module 'kie_async' has no attribute {name!r}")


__all__ = [
    "KIE_REQUEST_PARAM",
    "REQUEST_FIXTURES",
    "ArtifactDerivativeSettings",
    "ArtifactKind",
    "ArtifactSettings",
    "ArtifactSource",
    "AssetRef",
    "BatchProgress",
    "CallbackEvent",
    "CallbackReceiver",
    "CallbackReplayGuard",
    "CostEstimate",
    "CreateTaskPayload",
    "CreditBalance",
    "CreditBudget",
    "CreditSource",
    "DownloadResult",
    "FileOutput",
    "IndexEntry",
    "KieAPIStatusError",
    "KieArtifactError",
    "KieAuthenticationError",
    "KieBadRequestError",
    "KieCallbackBodyError",
    "KieCallbackVerificationError",
    "KieConfigError",
    "KieConnectionError",
    "KieDownloadContentError",
    "KieDownloadError",
    "KieDownloadURLError",
    "KieError",
    "KieInputError",
    "KieInsufficientCreditsError",
    "KieJournalBusyError",
    "KieNotFoundError",
    "KieRateLimitError",
    "KieRequestBlockedError",
    "KieResponseShapeError",
    "KieServerError",
    "KieSession",
    "KieSettings",
    "KieSubmissionUncertainError",
    "KieTaskFailedError",
    "KieTimeoutError",
    "KieUsageLimitError",
    "KieValidationError",
    "MediaInput",
    "MediaNotUploadedError",
    "NormalizedRequest",
    "PipelineHooks",
    "PipelineOptions",
    "PollSettings",
    "PreflightResult",
    "PreflightThresholds",
    "PreparedRequest",
    "PromptContext",
    "PromptEnhancementPreview",
    "PromptRecord",
    "ProviderTrace",
    "RateLimitSettings",
    "RawUserRequest",
    "RequestNotReadyError",
    "RequestState",
    "RetryPolicy",
    "RetrySettings",
    "RunArtifact",
    "RunArtifactCreateRequest",
    "RunManifest",
    "RunOutput",
    "RunResult",
    "RunStatus",
    "SessionStats",
    "StageOutcome",
    "TaskCreated",
    "TaskHandle",
    "TaskOutcome",
    "TaskProgress",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "UploadedFile",
    "ValidationResult",
    "__version__",
    "add_callback_route",
    "aload_registry",
    "apply_enhanced_prompt",
    "build_submission_payload",
    "check_wire_payload",
    "create_run_artifact",
    "download_output_file",
    "dry_run_prompt_enhancement",
    "estimate_request_cost",
    "estimate_wire_cost",
    "generate_derivatives",
    "get_credit_balance",
    "get_latest_assets",
    "get_latest_successful_run",
    "get_request_fixture",
    "list_recent_runs",
    "load_registry",
    "load_run",
    "media_needing_upload",
    "normalize_request",
    "preload_model_data",
    "prepare_request_for_submission",
    "print_run_summary",
    "query_runs",
    "read_index",
    "rebuild_artifact_index",
    "regenerate_run_derivatives",
    "request_token_from_url",
    "resolve_prompt_context",
    "run_many",
    "run_pipeline",
    "run_preflight",
    "sign_callback",
    "submit_prepared_request",
    "update_run_notes",
    "update_run_tags",
    "validate_request",
    "verify_callback",
    "verify_callback_signature",
    "wait_for_task",
    "with_hosted_media",
]
