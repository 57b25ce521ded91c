"""The provider's own request schemas, bundled as JSON files beside this module, and checking a body with them.

Each file (``market/<model>.json`` for ``createTask`` models, ``apis/<path>.json`` for the separate APIs'
create endpoints) is generated from a captured Kie.ai docs page by ``scripts/extract_provider_schemas.py``
and carries the page's URL, sha256 and capture date. Validation uses ``jsonschema`` (Draft 2020-12): it
reports *every* violation with its path, which is what a 422 envelope should list (``fastjsonschema`` stops
at the first error and its generated code is harder to audit).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # imported when first used: every CLI command imports the emulator, few validate
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError as SchemaViolation

BUNDLE_DIR = Path(__file__).resolve().parent


class ProviderSchema(BaseModel):
    """One bundled file, loaded."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    file: str
    endpoint: str
    models: tuple[str, ...]
    page: dict[str, str | None]
    schema_: dict[str, Any]
    corrections: tuple[dict[str, Any], ...] = ()
    example_inputs: tuple[dict[str, Any], ...] = ()

    @property
    def page_url(self) -> str | None:
        return self.page.get("url")

    def input_schema(self) -> dict[str, Any]:
        """The schema of the body's ``input`` object (empty when the endpoint has none)."""
        node = (self.schema_.get("properties") or {}).get("input")
        return node if isinstance(node, dict) else {}

    def input_defaults(self) -> dict[str, Any]:
        """The ``default`` of every ``input`` field the page gives one for: what the service fills in."""
        props = self.input_schema().get("properties") or {}
        return {name: sub["default"] for name, sub in props.items() if isinstance(sub, dict) and "default" in sub}


class SchemaBundle:
    """Every bundled schema, indexed by ``createTask`` model id and by endpoint path."""

    def __init__(self, schemas: list[ProviderSchema]) -> None:
        self.schemas = schemas
        self.by_model = {m: s for s in schemas if s.endpoint == "/api/v1/jobs/createTask" for m in s.models}
        self.by_endpoint: dict[str, list[ProviderSchema]] = {}
        for schema in schemas:
            if schema.endpoint != "/api/v1/jobs/createTask":
                self.by_endpoint.setdefault(schema.endpoint, []).append(schema)
        self._validators: dict[str, Draft202012Validator] = {}

    def for_model(self, model_id: str) -> ProviderSchema | None:
        return self.by_model.get(model_id)

    def for_endpoint(self, path: str) -> ProviderSchema | None:
        """The schema of a separate API's create endpoint (``/api/v1/veo/generate``), if bundled."""
        found = self.by_endpoint.get(path)
        return found[0] if found else None

    def violations(self, schema: ProviderSchema, body: Any) -> list[str]:
        """Every way ``body`` breaks ``schema``, as ``path: reason`` lines in document order."""
        from jsonschema import Draft202012Validator

        validator = self._validators.get(schema.file)
        if validator is None:
            validator = self._validators[schema.file] = Draft202012Validator(schema.schema_)
        errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        return [_describe(error) for error in errors]


def _describe(error: SchemaViolation) -> str:
    path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path).replace(".[", "[")
    message = error.message
    if len(message) > 300:  # an enum violation quotes the whole (possibly huge) value
        message = message[:297] + "..."
    return f"{path or 'body'}: {message}"


def _load_one(path: Path) -> ProviderSchema:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return ProviderSchema(
        file=path.relative_to(BUNDLE_DIR).as_posix(),
        endpoint=raw["endpoint"],
        models=tuple(raw["models"]),
        page=raw["page"],
        schema_=raw["schema"],
        corrections=tuple(raw.get("corrections", [])),
        example_inputs=tuple(raw.get("example_inputs", [])),
    )


@functools.lru_cache(maxsize=1)
def load_provider_schemas() -> SchemaBundle:
    """Read every bundled file once (blocking: call it from a thread, as ``KieEmulator.start`` does)."""
    import jsonschema  # noqa: F401  -- imported here, in the loading thread, so no request pays for it

    return SchemaBundle([_load_one(p) for p in sorted(BUNDLE_DIR.rglob("*.json"))])
