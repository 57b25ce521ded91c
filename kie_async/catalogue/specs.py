"""Model specs: the YAML files in ``model_specs/`` turned into typed, checked pydantic models.

Every difference between models (field types, allowed values, media roles and counts, task modes and the
provider model id each one uses, cross-field rules) lives in those files, so the normalizer, validator,
payload builder and pricing code stay generic. This is the ONE place that reads spec files; everything
else asks :func:`load_registry`. A bad spec fails loudly with its file and line, because a silently wrong
spec would spend someone's credits on a request the provider rejects.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kie_async._version import __version__
from kie_async.core.compiled_cache import CompiledIndex, content_key, read_index, write_index
from kie_async.core.data import data_dir
from kie_async.core.errors import KieConfigError
from kie_async.wire.task_apis import TransportSpec, market_transport

FieldType = Literal["string", "integer", "number", "boolean", "enum", "list", "object"]
MediaKind = Literal["image", "video", "audio"]
MediaRole = Literal["first_frame", "last_frame", "reference", "mask"]
OutputKind = Literal["image", "video", "audio"]
TaskModeName = Literal[
    "text_to_image",
    "image_edit",
    "text_to_video",
    "image_to_video",
    "first_last_frames",
    "multimodal_reference",
    "motion_control",
    "video_to_video",
    "audio_to_video",
    "text_to_audio",
    "audio_to_audio",
    "upscale",
    "follow_up",
]
TASK_MODE_NAMES: tuple[str, ...] = TaskModeName.__args__  # type: ignore[attr-defined]
Severity = Literal["invalid", "needs_input", "warning"]
ProvenanceStatus = Literal["doc", "live_3p", "third_party", "unconfirmed", "sdk_choice"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Provenance(_Spec):
    """Where a fact came from and when someone last checked it; the honest answer to "is this real?"."""

    source: str
    checked_on: str
    status: ProvenanceStatus = "doc"
    note: str | None = None


class Condition(_Spec):
    """One clause of a rule or conditional default; every key that is set must hold.

    ``field`` names an option, ``prompt`` or ``callback_url``; slots and task modes are matched by name.
    """

    field: str | None = None
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    present: bool | None = None
    gt: float | None = None
    lt: float | None = None
    task_mode: list[str] | None = None
    slot_filled: str | None = None
    slot_empty: str | None = None

    @model_validator(mode="after")
    def _needs_a_test(self) -> Condition:
        tests = ("equals", "in_", "present", "gt", "lt")
        if self.field is not None and not any(t in self.model_fields_set for t in tests):
            raise ValueError(f"condition on field {self.field!r} needs one of equals/in/present/gt/lt")
        if self.field is None and self.task_mode is None and self.slot_filled is None and self.slot_empty is None:
            raise ValueError("condition must name a field, task_mode, slot_filled or slot_empty")
        return self

    def holds(self, ctx: ConditionContext) -> bool:
        if self.task_mode is not None and ctx.task_mode not in self.task_mode:
            return False
        if self.slot_filled is not None and self.slot_filled not in ctx.filled_slots:
            return False
        if self.slot_empty is not None and self.slot_empty in ctx.filled_slots:
            return False
        if self.field is None:
            return True
        value = ctx.values.get(self.field)
        is_present = value is not None and value != [] and value != ""
        if self.present is not None and is_present != self.present:
            return False
        if "equals" in self.model_fields_set and value != self.equals:
            return False
        if self.in_ is not None and value not in self.in_:
            return False
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if self.gt is not None and (number is None or number <= self.gt):
            return False
        return not (self.lt is not None and (number is None or number >= self.lt))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ConditionContext(BaseModel):
    """What a condition may look at: normalized values (options plus prompt/callback_url) and the media plan."""

    model_config = ConfigDict(frozen=True)

    values: dict[str, Any]
    task_mode: str | None = None
    filled_slots: frozenset[str] = frozenset()


def all_hold(conditions: Iterable[Condition], ctx: ConditionContext) -> bool:
    return all(c.holds(ctx) for c in conditions)


class ConditionalDefault(_Spec):
    """A default that depends on other inputs (Kling 3.0: ``sound`` defaults to true with multi-shot)."""

    when: list[Condition]
    value: Any
    reason: str


class LimitWhen(_Spec):
    """A limit that holds only while its conditions hold (Suno: a 500-character prompt in non-custom mode).

    Every holding limit applies on top of the unconditional ones, so the tightest wins. On a media slot,
    ``min_items``/``max_items`` bound how many files the slot takes.
    """

    when: list[Condition] = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    reason: str = Field(min_length=8, description="why, in our words, with the page it comes from")

    @model_validator(mode="after")
    def _sets_a_limit(self) -> LimitWhen:
        limits = ("min", "max", "min_chars", "max_chars", "min_items", "max_items")
        if all(getattr(self, name) is None for name in limits):
            raise ValueError("a conditional limit needs one of " + "/".join(limits))
        return self


class FieldSpec(_Spec):
    """One input field: its type on our side, its type on the wire, and what values are allowed."""

    type: FieldType
    wire: Literal["native", "string"] = Field(
        default="native", description="'string': sent as a string although it is a number (Kling durations)"
    )
    description: str | None = None
    required: bool = False
    default: Any = None
    default_when: list[ConditionalDefault] = Field(default_factory=list)
    send_default: bool = True
    allowed: list[Any] | None = None
    value_aliases: dict[str, Any] = Field(
        default_factory=dict,
        description="other spellings of allowed values (e.g. std -> 720p): accepted from users and on the wire, "
        "sent as the value they map to",
    )
    min: float | None = None
    max: float | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    multiple_of: float | None = Field(
        default=None,
        gt=0,
        description="numbers: a step the value must be a whole multiple of (a page's 'in steps of 0.5' or multipleOf)",
    )
    decimals: int | None = Field(default=None, ge=0, description="numbers: at most this many decimal places")
    max_total_chars: int | None = Field(
        default=None,
        ge=1,
        description="lists: all text in all items together (a page's combined length across a dialogue's lines)",
    )
    limits_when: list[LimitWhen] = Field(default_factory=list, description="limits that hold only in some modes")
    items: FieldSpec | None = None
    fields: dict[str, FieldSpec] | None = None
    aliases: list[str] = Field(default_factory=list)
    deprecated: bool = False
    unconfirmed: bool = False
    provenance: Provenance | None = None
    verification_note: str | None = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set and self.default is not None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.type == "enum" and not self.allowed:
            raise ValueError("an enum field needs a non-empty 'allowed' list")
        if self.type == "list" and self.items is None:
            raise ValueError("a list field needs 'items'")
        if self.type == "object" and not self.fields:
            raise ValueError("an object field needs 'fields'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        stray = {k: v for k, v in self.value_aliases.items() if self.allowed is None or v not in self.allowed}
        if stray:
            raise ValueError(f"value_aliases must map to allowed values; {stray!r} do not")
        if self.has_default and self.allowed is not None and self.default not in self.allowed:
            raise ValueError(f"default {self.default!r} is not in allowed {self.allowed!r}")
        return self


class Range(_Spec):
    min: float | None = None
    max: float | None = None


class PixelLimits(_Spec):
    """An input image's or video's frame size as the page bounds it, read from the file's header (an image's, or
    an MP4/MOV track header) before any upload; hosted URLs are not fetched."""

    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_side: int | None = Field(default=None, description="the shorter side")
    max_side: int | None = Field(default=None, description="the longer side")
    min_pixels: int | None = Field(default=None, description="width x height")
    max_pixels: int | None = Field(default=None, description="width x height")
    aspect_ratio: Range | None = Field(default=None, description="width / height")


class MediaSlot(_Spec):
    """A place media goes in a task mode: which kind and roles it takes, how many, and its payload field."""

    name: str
    kind: MediaKind
    roles: list[MediaRole]
    accepts_unroled: bool = True
    min: int = 0
    max: int = 1
    field: str
    shape: Literal["list", "scalar"] = "list"
    formats: list[str] = Field(default_factory=list, description="file extensions, lower case, no dot")
    max_mb: float | None = None
    max_total_mb: float | None = Field(default=None, gt=0, description="all of this slot's files together")
    pixels: PixelLimits | None = Field(default=None, description="images: width, height and aspect bounds")
    limits_when: list[LimitWhen] = Field(
        default_factory=list, description="counts (min_items/max_items) that hold only in some modes"
    )
    duration_seconds: Range | None = None
    url_prefixes: list[str] = Field(
        default_factory=lambda: ["https://", "http://"], description="what the provider takes as a hosted reference"
    )
    provenance: Provenance | None = None

    @model_validator(mode="after")
    def _counts(self) -> MediaSlot:
        if self.min > self.max:
            raise ValueError(f"slot {self.name!r}: min {self.min} is above max {self.max}")
        if self.shape == "scalar" and self.max != 1:
            raise ValueError(f"slot {self.name!r}: a scalar slot holds at most one item")
        return self


class SlotTotal(_Spec):
    """A count across several slots of one task mode (Seedance: frames plus reference images at most 9)."""

    slots: list[str] = Field(min_length=2)
    min: int = 0
    max: int | None = None
    reason: str = Field(min_length=8)


class TaskModeSpec(_Spec):
    """One way to call the model: its provider model id and where each piece of media goes."""

    name: TaskModeName
    provider_model: str
    input_pattern: str
    slots: list[MediaSlot] = Field(default_factory=list)
    min_total_media: int = 0
    max_total_media: int | None = None
    max_total_seconds: dict[MediaKind, float] = Field(default_factory=dict)
    slot_totals: list[SlotTotal] = Field(default_factory=list)
    description: str | None = None
    provenance: Provenance | None = None

    @model_validator(mode="after")
    def _unique_slot_names(self) -> TaskModeSpec:
        # Media are matched to payload fields by slot name: two slots of one name would send one file twice.
        names = [s.name for s in self.slots]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"task mode {self.name!r}: slot name(s) {repeated} repeat; each slot needs its own "
                f"name (media are sent by slot name)"
            )
        for total in self.slot_totals:
            unknown = sorted(set(total.slots) - set(names))
            if unknown:
                raise ValueError(f"task mode {self.name!r}: slot_totals names unknown slot(s) {unknown}")
        return self

    def slot(self, name: str) -> MediaSlot | None:
        return next((s for s in self.slots if s.name == name), None)


class RuleSpec(_Spec):
    """A cross-field rule: when all conditions hold, report ``severity`` on ``field`` (and maybe drop fields)."""

    id: str
    when: list[Condition]
    severity: Severity
    field: str
    message: str
    fix: str
    drop: list[str] = Field(default_factory=list, description="fields left out of the payload when this fires")
    provenance: Provenance | None = None


class PromptSpec(_Spec):
    field: str = "prompt"
    accepted: bool = Field(
        default=True, description="false: the model takes no prompt at all (upscalers), so one given is refused"
    )
    required: bool = True
    required_unless: list[Condition] = Field(default_factory=list)
    min_chars: int | None = None
    max_chars: int | None = None
    limits_when: list[LimitWhen] = Field(default_factory=list, description="lengths that hold only in some modes")
    provenance: Provenance | None = None


class SourcePage(_Spec):
    """The provider docs page a spec was imported from (``kie-async models import``), for the drift check."""

    page: str = Field(description="path below the captured docs root, e.g. market/kling/kling-3-0.md")
    url: str | None = None
    captured: str | None = None
    operation: str = "/api/v1/jobs/createTask"


class Override(_Spec):
    """A fact that deliberately differs from the source page; the drift check skips ``path`` and below."""

    path: str = Field(description="a drift fact path, e.g. options.mode.allowed or media.image_urls")
    why: str = Field(min_length=8)


class ExampleCorrection(_Spec):
    """A page's own example request breaks the page's rules: the offline check applies this fix first."""

    field: str
    value: Any = None
    remove: bool = Field(default=False, description="drop the field from the example instead of replacing it")
    why: str = Field(min_length=8)


PageLimitStatus = Literal["enforced", "contradiction", "not_expressible", "unconfirmed", "not_a_limit"]


class PageLimit(_Spec):
    """A limit a page states in words, and what the spec does with it (see :mod:`kie_async.catalogue.prose_audit`).

    ``enforced`` names the spec path that checks it (``by``); every other status says ``why`` not: the page
    contradicts itself (``why`` names the side taken), the spec format cannot say it, it is not confirmed, or the
    sentence only looks like a limit.
    """

    line: int = Field(ge=1, description="the page line the statement is on (provenance)")
    field: str = Field(description="the input field whose description states it, or '*' for the page's prose")
    says: str = Field(min_length=3, description="the limit in a few words")
    status: PageLimitStatus
    by: str | None = Field(default=None, description="enforced: the spec path that checks it")
    why: str | None = Field(default=None, min_length=8)

    @model_validator(mode="after")
    def _explained(self) -> PageLimit:
        if self.status == "enforced" and not self.by:
            raise ValueError("an enforced page limit names the spec path that enforces it ('by')")
        if self.status != "enforced" and not self.why:
            raise ValueError(f"a page limit that is {self.status} says why ('why')")
        return self


class ModelSpec(_Spec):
    """Everything the SDK knows about one model key."""

    key: str
    label: str
    family: str
    output_kind: OutputKind
    aliases: list[str] = Field(default_factory=list)
    description: str | None = None
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    options: dict[str, FieldSpec] = Field(default_factory=dict)
    task_modes: list[TaskModeSpec]
    rules: list[RuleSpec] = Field(default_factory=list)
    default_presets: dict[str, str] = Field(default_factory=dict, description="input pattern -> preset key")
    typical_generation_seconds: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="how long a task usually takes on Kie.ai; seeds the first status read of a new task (the "
        "session then learns the real figure per model). Unset: the poll schedule's first interval",
    )
    provenance: Provenance
    verification_notes: list[str] = Field(default_factory=list)
    progress_callback_field: str | None = Field(
        default=None,
        description="a top-level body field for progress callbacks (Sora 2's progressCallBackUrl): the run's "
        "callback URL is sent there too, so progress posts wake the same receiver",
    )
    transport: TransportSpec = Field(
        default_factory=market_transport,
        description="the API this model is bought through; absent: the market createTask/recordInfo",
    )
    source_page: SourcePage | None = None
    overrides: list[Override] = Field(default_factory=list)
    example_corrections: list[ExampleCorrection] = Field(default_factory=list)
    audit_page: SourcePage | None = Field(
        default=None,
        description="the page whose prose limits the audit reads when there is no source_page "
        "(a separate API's create page; operation = its path)",
    )
    page_limits: list[PageLimit] = Field(
        default_factory=list, description="limits the page states in words: enforced where, or why not"
    )
    source_file: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        names = [m.name for m in self.task_modes]
        if not names:
            raise ValueError("a model needs at least one task mode")
        if len(set(names)) != len(names):
            raise ValueError(f"task modes repeat: {names}")
        slot_names = {s.name for m in self.task_modes for s in m.slots}
        known_values = set(self.options) | {"prompt", "callback_url"}
        for rule in self.rules:
            for cond in rule.when:
                if cond.field is not None and cond.field not in known_values:
                    raise ValueError(f"rule {rule.id!r} tests unknown field {cond.field!r}")
                for slot in (cond.slot_filled, cond.slot_empty):
                    if slot is not None and slot not in slot_names:
                        raise ValueError(f"rule {rule.id!r} tests unknown slot {slot!r}")
            for dropped in rule.drop:
                if dropped not in self.options:
                    raise ValueError(f"rule {rule.id!r} drops unknown option {dropped!r}")
        self._check_conditional_limits(known_values, slot_names)
        wire_fields = {self.prompt.field} | set(self.options)
        for mode in self.task_modes:
            for media_slot in mode.slots:
                if media_slot.field in wire_fields:
                    raise ValueError(
                        f"slot {media_slot.name!r} writes field {media_slot.field!r}, which is also an option"
                    )
        body_fields = {f for f in (self.transport.create.model_field, self.transport.create.callback_field) if f}
        if self.transport.create.input_field is None:
            wire_names = wire_fields | {s.field for m in self.task_modes for s in m.slots}
            clash = sorted(wire_names & body_fields)
            if clash:
                raise ValueError(f"field(s) {clash} collide with the transport's own body fields")
        override_paths = [o.path for o in self.overrides]
        if len(set(override_paths)) != len(override_paths):
            raise ValueError(f"overrides repeat a path: {override_paths}")
        if self.overrides and self.source_page is None:
            raise ValueError("overrides need a source_page to differ from")
        seen_alias: set[str] = set()
        for name, opt in self.options.items():
            for alias in opt.aliases:
                if alias in self.options or alias in seen_alias:
                    raise ValueError(f"option alias {alias!r} of {name!r} clashes")
                seen_alias.add(alias)
        return self

    def _check_conditional_limits(self, known_values: set[str], slot_names: set[str]) -> None:
        owners: list[tuple[str, list[LimitWhen]]] = [("prompt", self.prompt.limits_when)]
        owners += [(f"options.{name}", opt.limits_when) for name, opt in self.options.items()]
        owners += [(f"slot {s.name}", s.limits_when) for m in self.task_modes for s in m.slots]
        for owner, limits in owners:
            for limit in limits:
                for cond in limit.when:
                    if cond.field is not None and cond.field not in known_values:
                        raise ValueError(f"{owner}: a conditional limit tests unknown field {cond.field!r}")
                    for slot in (cond.slot_filled, cond.slot_empty):
                        if slot is not None and slot not in slot_names:
                            raise ValueError(f"{owner}: a conditional limit tests unknown slot {slot!r}")

    def mode(self, name: str) -> TaskModeSpec | None:
        return next((m for m in self.task_modes if m.name == name), None)

    @property
    def provider_models(self) -> list[str]:
        return sorted({m.provider_model for m in self.task_modes})

    def option_name(self, user_name: str) -> str | None:
        """Map a name the user typed (field name or alias, dashes or underscores) to the spec's field name."""
        wanted = user_name.replace("-", "_")
        for name, opt in self.options.items():
            if wanted == name or wanted in opt.aliases:
                return name
        return None


class _LazySpecs(Mapping[str, "ModelSpec"]):
    """Specs by key in file-name order, each checked (validated) the first time it is asked for.

    From the compiled cache, ``kie-async estimate`` checks the one spec it prices instead of all of them.
    """

    def __init__(self, keys: Sequence[str], load: Callable[[str], ModelSpec]) -> None:
        self._keys = list(keys)
        self._known = frozenset(self._keys)
        self._load = load
        self._loaded: dict[str, ModelSpec] = {}

    def __getitem__(self, key: str) -> ModelSpec:
        spec = self._loaded.get(key)
        if spec is None:
            if key not in self._known:
                raise KeyError(key)
            spec = self._loaded[key] = self._load(key)
        return spec

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class ModelRegistry:
    """All loaded specs, by key, with alias resolution. Read-only; specs from the compiled cache load on use."""

    def __init__(
        self, specs: Mapping[str, ModelSpec], spec_dir: str, aliases: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.specs: Mapping[str, ModelSpec] = specs
        self.spec_dir = spec_dir
        self._aliases = {key: [a.lower() for a in found] for key, found in (aliases or {}).items()}
        if aliases is None:
            self._aliases = {key: [a.lower() for a in spec.aliases] for key, spec in specs.items()}

    def model_keys(self) -> list[str]:
        return list(self.specs)

    def get(self, key: str) -> ModelSpec:
        try:
            return self.specs[key]
        except KeyError:
            raise KeyError(f"unknown model key {key!r}{did_you_mean(key, self.known_names())}") from None

    def known_names(self) -> list[str]:
        """Every key and alias a user may type."""
        return [*self.specs, *(alias for found in self._aliases.values() for alias in found)]

    def suggest(self, name: str) -> list[str]:
        """Model keys close to a mistyped ``name`` (its keys and aliases compared), best first."""
        owners = {alias: key for key, found in self._aliases.items() for alias in found}
        close = close_matches(name, [*self.specs, *owners], n=6)
        return list(dict.fromkeys(owners.get(match, match) for match in close))[:3]

    def candidates(self, name: str) -> list[ModelSpec]:
        """Specs a typed name may mean: the exact key, else every spec listing it as an alias (in key order)."""
        wanted = name.strip().lower()
        if wanted in self.specs:
            return [self.specs[wanted]]
        return [self.specs[key] for key, found in self._aliases.items() if wanted in found]

    def by_provider_model(self, model_id: str) -> list[tuple[ModelSpec, TaskModeSpec]]:
        return [
            (spec, mode) for spec in self.specs.values() for mode in spec.task_modes if mode.provider_model == model_id
        ]


def close_matches(word: object, choices: Iterable[Any], *, n: int = 3) -> list[Any]:
    """The choices close to a mistyped ``word`` (compared as lower-case text), best first, as given."""
    pool: dict[str, Any] = {}
    for choice in choices:
        pool.setdefault(str(choice).lower(), choice)
    return [pool[m] for m in difflib.get_close_matches(str(word).strip().lower(), list(pool), n=n, cutoff=0.6)]


def did_you_mean(word: object, choices: Iterable[Any], *, n: int = 3) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the choices close to a mistyped ``word``, else ``""``."""
    close = close_matches(word, choices, n=n)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def suggest_fix(word: object, choices: Iterable[Any], otherwise: str) -> str:
    """A fix that starts with the likely intended choice: ``did you mean 'jpg'? (use one of [...])``."""
    close = close_matches(word, choices)
    return f"did you mean {' or '.join(repr(c) for c in close)}? ({otherwise})" if close else otherwise


class SpecError(KieConfigError):
    """A model spec file is malformed; the message names the file and line."""

    hint = "fix the YAML file named above (see model_specs/README or an existing spec)"


def _node_line(root: Any, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest node along ``loc`` that ruamel kept position info for."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap):
            if part not in node:
                part = "in" if part == "in_" else part
            if part not in node:
                break
            pos = node.lc.key(part)
            line = pos[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            pos = node.lc.item(part)
            line = pos[0] + 1
            node = node[part]
        else:
            break
    return line


def _to_plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    return node


def load_spec_file(path: Path) -> ModelSpec:
    """Read and check one spec file, or raise :class:`SpecError` naming file and line.

    The fast ``safe`` loader reads good files; only a bad file is re-read with the round-trip loader,
    which keeps the line numbers the error message needs.
    """
    return _parse_spec(path, path.read_text(encoding="utf-8"))[1]


def _parse_spec(path: Path, text: str) -> tuple[dict[str, Any], ModelSpec]:
    """The plain data of one spec file (what the compiled cache stores) and the checked spec."""
    from ruamel.yaml import YAML  # loaded with the first spec, not with the package (~120 ms of import)
    from ruamel.yaml.error import MarkedYAMLError

    try:
        data = YAML(typ="safe").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else "?"
        raise SpecError(f"{path}:{line}: YAML syntax error: {exc.problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: a model spec must be a mapping at the top level")
    data = _to_plain(data)
    data["source_file"] = str(path)
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        root = YAML(typ="rt").load(text)
        lines = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if isinstance(p, int | str)]
            line = _node_line(root, loc) or 1
            where = ".".join(str(p) for p in loc) or "<top>"
            lines.append(f"{path}:{line}: {where}: {err['msg']}")
        raise SpecError("invalid model spec\n" + "\n".join(lines)) from None
    if spec.key != path.stem:
        line_no = _node_line(YAML(typ="rt").load(text), ["key"]) or 1
        raise SpecError(f"{path}:{line_no}: key {spec.key!r} must match the file name")
    return data, spec


SPEC_DIR_ENV = "KIE_MODEL_SPECS_DIR"


_INDEX_KIND = "model-specs"


def _code_sources() -> list[tuple[str, bytes]]:
    """The code that checks a spec: a change to it makes the cached (already checked) data stale."""
    sources = []
    for module in (sys.modules[__name__], sys.modules[TransportSpec.__module__]):
        try:
            code = Path(module.__file__ or "").read_bytes()
        except OSError:  # no source file (a frozen app): the package version in the key stands for the code
            code = b""
        sources.append((f"code:{module.__name__}", code))
    return sources


@functools.lru_cache(maxsize=8)
def _load_cached(spec_dirs: tuple[str, ...]) -> ModelRegistry:
    files: dict[str, Path] = {}
    for folder in map(Path, spec_dirs):
        files.update((p.stem, p) for p in sorted(folder.glob("*.yaml")))  # a later folder overrides by file name
    if not files:
        raise SpecError(f"{os.pathsep.join(spec_dirs)}: no *.yaml model specs found")
    ordered = sorted(files.values(), key=lambda p: p.name)
    sources = {path: path.read_bytes() for path in ordered}
    key = content_key([*_code_sources(), *((str(path), data) for path, data in sources.items())], __version__)
    spec_dir = os.pathsep.join(spec_dirs)
    index = read_index(_INDEX_KIND, key)
    if index is not None:
        return _registry_from_index(index, {path.stem: path for path in ordered}, spec_dir)
    specs: dict[str, ModelSpec] = {}
    plain: dict[str, dict[str, Any]] = {}
    for path, raw in sources.items():
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        data, spec = _parse_spec(path, text)
        specs[spec.key] = spec
        plain[spec.key] = data
    alias_owner: dict[str, str] = {}
    for spec in specs.values():
        for alias in spec.aliases:
            if alias in specs:
                raise SpecError(f"{spec.source_file}: alias {alias!r} is also a model key")
            alias_owner.setdefault(alias, spec.key)
    write_index(_INDEX_KIND, key, plain, {"aliases": {k: s.aliases for k, s in specs.items()}})
    return ModelRegistry(specs, spec_dir)


def _registry_from_index(index: CompiledIndex, paths: Mapping[str, Path], spec_dir: str) -> ModelRegistry:
    """A registry over the compiled cache: each spec is checked (validated) when first asked for."""

    def load(key: str) -> ModelSpec:
        try:
            return ModelSpec.model_validate(index.entry(key))
        except ValidationError:  # the cache was written by other code: read the file for the line numbers
            return load_spec_file(paths[key])

    aliases: dict[str, list[str]] = index.meta.get("aliases") or {}
    return ModelRegistry(_LazySpecs(index.names(), load), spec_dir, aliases)


def load_registry(spec_dir: str | Path | None = None) -> ModelRegistry:
    """Load (once, then cached) every spec in ``spec_dir``, or the bundled ``model_specs`` folder plus any
    folders in ``$KIE_MODEL_SPECS_DIR`` (``os.pathsep``-separated; their files override bundled ones by name).

    Adding a model is adding one YAML file: nothing in the code lists model keys.
    """
    if spec_dir is not None:
        return _load_cached((str(Path(spec_dir).resolve()),))
    env = os.environ.get(SPEC_DIR_ENV, "")
    if not env and (loaded := _LOADED_DEFAULT.get(env)) is not None:
        return loaded  # the bundled folder alone: nothing to resolve again (the pipeline asks on every run)
    extra = [str(Path(d).resolve()) for d in env.split(os.pathsep) if d]
    registry = _load_cached((str(data_dir("model_specs")), *extra))
    _LOADED_DEFAULT[env] = registry
    return registry


_LOADED_DEFAULT: dict[str, ModelRegistry] = {}
"""The default registry by ``$KIE_MODEL_SPECS_DIR`` value, once loaded (read without touching the disk)."""


def loaded_registry() -> ModelRegistry | None:
    """The default registry if it is already in memory, else ``None``: for sync code on the event loop, which
    must not parse YAML there (use :func:`aload_registry` when this says ``None``)."""
    return _LOADED_DEFAULT.get(os.environ.get(SPEC_DIR_ENV, ""))


async def aload_registry(spec_dir: str | Path | None = None) -> ModelRegistry:
    """:func:`load_registry` for async code: the first (uncached) load parses YAML for ~150 ms, so it runs in a
    worker thread instead of stalling the event loop; later calls return the cached registry without a thread hop."""
    if spec_dir is None and (registry := loaded_registry()) is not None:
        return registry
    return await asyncio.to_thread(load_registry, spec_dir)


def clear_registry_cache() -> None:
    """Forget loaded specs (for tests and tools that edit spec files while running)."""
    _load_cached.cache_clear()
    _LOADED_DEFAULT.clear()
