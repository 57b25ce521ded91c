"""The data types kie-async returns and takes, in one place to import from and annotate with.

The top level (``kie_async``) keeps what most code reaches for; these are the models behind it: task records and
states, run results and manifests, settings parts, progress reports. Everything here is a pydantic model, an
enum or a small class; nothing here does I/O.
"""

from kie_async.artifacts.index import IndexEntry
from kie_async.artifacts.manifest import (
    ArtifactKind,
    ArtifactSource,
    PromptRecord,
    ProviderTrace,
    RunArtifact,
    RunArtifactCreateRequest,
    RunManifest,
    RunStatus,
)
from kie_async.artifacts.query import AssetRef
from kie_async.artifacts.settings import ArtifactDerivativeSettings
from kie_async.catalogue.preflight import (
    CreditSource,
)
from kie_async.catalogue.presets import (
    PromptContext,
    PromptEnhancementPreview,
)
from kie_async.catalogue.request_models import (
    NormalizedRequest,
)
from kie_async.client import (
    SessionStats,
)
from kie_async.ledger.request_state import (
    RequestState,
)
from kie_async.pipeline.chat import (
    ChatStream,
)
from kie_async.pipeline.chat_request import ChatRequest, ChatRunResult
from kie_async.pipeline.prepared import (
    PreparedRequest,
)
from kie_async.pipeline.run import (
    PipelineHooks,
    RunOutput,
    StageOutcome,
)
from kie_async.pipeline.run_models import (
    RunResults,
)
from kie_async.wire.api_models import (
    CreateTaskPayload,
    CreditBalance,
    DownloadResult,
    TaskCreated,
    TaskRecord,
    TaskResult,
    TaskState,
    UploadedFile,
)
from kie_async.wire.chat.models import (
    ChatDelta,
    ChatUsage,
    ToolCall,
)
from kie_async.wire.polling import (
    TaskProgress,
)
from kie_async.wire.retry import (
    RetryPolicy,
)

__all__ = [
    "ArtifactDerivativeSettings",
    "ArtifactKind",
    "ArtifactSource",
    "AssetRef",
    "ChatDelta",
    "ChatRequest",
    "ChatRunResult",
    "ChatStream",
    "ChatUsage",
    "CreateTaskPayload",
    "CreditBalance",
    "CreditSource",
    "DownloadResult",
    "IndexEntry",
    "NormalizedRequest",
    "PipelineHooks",
    "PreparedRequest",
    "PromptContext",
    "PromptEnhancementPreview",
    "PromptRecord",
    "ProviderTrace",
    "RequestState",
    "RetryPolicy",
    "RunArtifact",
    "RunArtifactCreateRequest",
    "RunManifest",
    "RunOutput",
    "RunResults",
    "RunStatus",
    "SessionStats",
    "StageOutcome",
    "TaskCreated",
    "TaskProgress",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "ToolCall",
    "UploadedFile",
]
