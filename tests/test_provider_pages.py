"""The docs-page reader: OpenAPI blocks out of markdown, $refs resolved, provenance from the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kie_async.core.provider_pages import ProviderPageError, iter_pages, read_page

_PAGE = """# Sample Model

## OpenAPI Specification

```yaml
openapi: 3.0.1
info: {title: '', version: 1.0.0}
paths:
  /api/v1/jobs/createTask:
    post:
      summary: Sample Model
      operationId: sample-model
      requestBody:
        content:
          application/json:
            schema:
              type: object
              required: [model]
              properties:
                model: {type: string, enum: [acme/sample]}
                callBackUrl: {$ref: '#/components/schemas/CallbackUrl'}
                input:
                  type: object
                  properties:
                    aspect_ratio: {type: string, enum: ['1:1', '16:9'], default: '1:1'}
            example:
              model: acme/sample
              input: {aspect_ratio: '16:9'}
components:
  schemas:
    CallbackUrl: {type: string, format: uri}
```

Some prose with ```yaml
not: openapi
```
"""


def _docs(tmp_path: Path, text: str = _PAGE) -> Path:
    (tmp_path / "market" / "acme").mkdir(parents=True)
    (tmp_path / "market" / "acme" / "sample.md").write_text(text)
    (tmp_path / "market" / "prose.md").write_text("# Prose only\n")
    manifest = {
        "generated_at": "2026-04-29T22:45:53Z",
        "documents": [
            {"url": "https://docs.example/market/acme/sample.md", "path": "market/acme/sample.md", "sha256": "ab" * 32}
        ],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_a_page_yields_its_operation_schema_and_provenance(tmp_path: Path) -> None:
    root = _docs(tmp_path)
    page = read_page(root / "market" / "acme" / "sample.md")
    assert page.title == "Sample Model"
    assert page.source == "market/acme/sample.md"
    assert page.url == "https://docs.example/market/acme/sample.md"
    assert page.captured is not None and page.captured.isoformat() == "2026-04-29"
    op = page.operation("/api/v1/jobs/createTask")
    assert op is not None and op.model_ids == ("acme/sample",)
    assert op.request_schema is not None
    assert op.request_schema["properties"]["callBackUrl"] == {"type": "string", "format": "uri"}
    assert op.request_examples == ({"model": "acme/sample", "input": {"aspect_ratio": "16:9"}},)
    assert [p.source for p in iter_pages(root)] == ["market/acme/sample.md"]


def test_broken_blocks_and_ref_cycles_are_named_errors(tmp_path: Path) -> None:
    root = _docs(
        tmp_path,
        _PAGE.replace(
            "CallbackUrl: {type: string, format: uri}", "CallbackUrl: {$ref: '#/components/schemas/CallbackUrl'}"
        ),
    )
    with pytest.raises(ProviderPageError, match="cycle"):
        read_page(root / "market" / "acme" / "sample.md")
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 3.0.1\npaths: [1, 2\n")
    with pytest.raises(ProviderPageError, match="not valid YAML"):
        read_page(bad)
    bad.write_text("openapi: 3.0.1\n")
    with pytest.raises(ProviderPageError, match="no 'paths'"):
        read_page(bad)


def test_every_captured_market_page_parses(kie_docs: Path) -> None:
    pages = iter_pages(kie_docs, under="market")
    create = [p for p in pages if p.operation("/api/v1/jobs/createTask") is not None]
    assert len(create) >= 100
    for page in create:
        op = page.operation("/api/v1/jobs/createTask")
        assert op is not None and op.model_ids, page.source
        assert page.url and page.url.startswith("https://"), page.source
