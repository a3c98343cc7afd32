"""The same API without Ray: embedded arms in one process (plain uvicorn, or an in-process client).

Used by the fast tests (ASGI in process) and by the load benchmark as the no-Serve ceiling:

    uvicorn --factory serving.standalone:create_app --host 127.0.0.1 --port 8100
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

from serving.arms import Arm, ArmSpec
from serving.backends import EmbeddedArms
from serving.service import DiarizationService
from serving.settings import ServingSettings


def build_service(
    arms: dict[str, dict[str, Any]],
    weights: dict[str, float] | None = None,
    settings: ServingSettings | None = None,
    log_predictions: bool | None = None,
    workers: int = 1,
) -> DiarizationService:
    """A service whose arms run in this process (loaded now; no champion polling)."""
    built = {name: Arm(ArmSpec.from_dict(name, opts)) for name, opts in arms.items()}
    for arm in built.values():
        arm.refresh()
    return DiarizationService(EmbeddedArms(built, workers), list(arms), weights, settings, log_predictions)


def create_app() -> FastAPI:
    """uvicorn factory: arms and weights from ``FLYWHEEL_STANDALONE_ARGS`` (JSON, like ``AppArgs``)."""
    from serving.api import create_api

    args = json.loads(os.environ.get("FLYWHEEL_STANDALONE_ARGS", "{}"))
    arms = args.get("arms") or {"fast-cnn": {}}
    service = build_service(
        arms, args.get("weights"), log_predictions=args.get("log_predictions"), workers=args.get("workers", 1)
    )
    api = create_api(service)
    api.router.on_shutdown.append(service.close)
    return api
