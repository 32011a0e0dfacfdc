"""The dashboard: static pages (HTML, CSS, JS and the charting library installed from npm at
setup, all served from this package, never a CDN) that read two JSON routes. The pages hold
no data, so they load without a key; the routes need one when keys are configured (the page
asks for it, or takes it from `#key=` in its address, which never reaches a server log)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from sme.contracts.sequences import SequenceConfig
from sme.core.roi import Economics
from sme.gateway.configs_api import API, Caller, FromDate, ToDate, report_window
from sme.storage.dashboard import overview, sequence_dashboard
from sme.storage.program import program_overview

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
CHART_LIBRARY = STATIC / "vendor" / "chart.umd.min.js"
PAGE = STATIC / "dashboard.html"
EDITOR_PAGE = STATIC / "editor.html"
router = APIRouter()


def check_assets() -> bool:
    """Charts need the library `make install` copies from npm; the pages still show every
    figure as text without it, and say so."""
    if CHART_LIBRARY.exists():
        return True
    log.warning("%s is missing (run `make install`): dashboard charts are off", CHART_LIBRARY)
    return False


@router.get("/dashboard/editor", include_in_schema=False)
@router.get("/dashboard/editor/{config_id}", include_in_schema=False)
async def editor_page() -> FileResponse:
    """The sequence editor (declared before `/dashboard/{config_id}`, which would take
    `editor` for an id); like the dashboard it holds no data and calls the API with the key."""
    return FileResponse(EDITOR_PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard", include_in_schema=False)
@router.get("/dashboard/{config_id}", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/api/v1/dashboard/overview", tags=["reporting"])
async def dashboard_overview(
    request: Request,
    who: Caller,
    from_: FromDate = None,
    to: ToDate = None,
) -> dict[str, Any]:
    """Every sequence the caller may see, with its headline figures over the window, and per
    workspace (`program`) the whole program against its global control group: treated and
    control conversion rates and revenue per user, incremental conversions and revenue with
    95% CIs (`status`: `ok`, `too_small` or `off`)."""
    started = time.perf_counter()
    start, end = report_window(from_, to)
    gw = request.app.state.gw
    configs = [c for c in gw.configs.registry.all_configs() if who.may_see(c.workspace_id)]
    await gw.rollup.refresh()
    figures = await overview(gw.store, [(c.workspace_id, c.id) for c in configs], start, end)
    workspaces = sorted({c.workspace_id for c in configs})
    program = await program_overview(
        gw.store, [gw.configs.workspace(w) for w in workspaces], start, end
    )
    items = [
        {**_summary(c), "figures": figures.get(c.id)}
        for c in sorted(configs, key=lambda c: (c.workspace_id, c.name, c.id))
    ]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "items": items,
        "program": program,
        "took_ms": round((time.perf_counter() - started) * 1000, 1),
    }


@router.get(f"{API}/{{config_id}}/dashboard", tags=["reporting"])
async def sequence_dashboard_data(
    request: Request,
    who: Caller,
    config_id: str,
    from_: FromDate = None,
    to: ToDate = None,
    granularity: Literal["day", "week"] = "day",
) -> dict[str, Any]:
    """Everything one sequence's dashboard shows: its metrics (as `/metrics`) and its
    latest decisions."""
    started = time.perf_counter()
    gw = request.app.state.gw
    config = gw.configs.get(config_id, who.workspace_id)
    start, end = report_window(from_, to)
    await gw.rollup.refresh()
    payload = await sequence_dashboard(
        gw.store,
        config.workspace_id,
        config_id,
        start,
        end,
        datetime.now(UTC),
        Economics.of(config),
        granularity,
        step_order=[step.id for step in config.steps],
    )
    return {
        "config": {**_summary(config), "steps": [step.id for step in config.steps]},
        **payload,
        "took_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _summary(config: SequenceConfig) -> dict[str, Any]:
    reason = config.status_reason
    return {
        "id": config.id,
        "workspace_id": config.workspace_id,
        "name": config.name,
        "status": config.status.value,
        "status_reason": reason.model_dump(mode="json") if reason else None,
        "version": config.version,
    }
