"""The pricing API behind kie.ai/pricing (``/client/v1/model-pricing/{count,page}``), serving the emulator's list.

The real endpoints are undocumented and public (no key); the shape follows what third parties saw live
(facts file, section 1): ``count`` gives per-kind totals, ``page`` takes ``{pageNum, pageSize}`` and answers
MyBatis-Plus paging with ``records``.
"""

from __future__ import annotations

from aiohttp import web

from kie_async.emulator.price_table import load_price_catalogue
from kie_async.emulator.wire import context, envelope

COUNT_PATH = "/client/v1/model-pricing/count"
PAGE_PATH = "/client/v1/model-pricing/page"
MAX_PAGE_SIZE = 500


async def pricing_count(request: web.Request) -> web.StreamResponse:
    return envelope(context(request), 200, "success", load_price_catalogue().count())


async def pricing_page(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    try:
        body = await request.json()
        page_num, page_size = body["pageNum"], body["pageSize"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return envelope(ctx, 400, "pageNum and pageSize are required")
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (page_num, page_size))
        or page_num < 1
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        return envelope(ctx, 400, f"pageNum must be >= 1 and pageSize 1..{MAX_PAGE_SIZE}")
    return envelope(ctx, 200, "success", load_price_catalogue().page(page_num, page_size))


def add_pricing_routes(router: web.UrlDispatcher) -> None:
    router.add_get(COUNT_PATH, pricing_count, name="pricing-count")
    router.add_post(PAGE_PATH, pricing_page, name="pricing-page")
