"""Control plane for tests and benchmarks (not part of Entra).

* ``GET /_emulator/stats``: counters and settings (`EmulatorState.stats`)
* ``POST /_emulator/reset``: zero the counters
* ``GET|PUT /_emulator/fault``: read or switch the global fault mode and latency (faults.py)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulators.entra.faults import FaultMode
from emulators.entra.state import EmulatorState


class _FaultRequest(BaseModel):
    """Body of ``PUT /_emulator/fault``; ``latency_ms`` omitted or null leaves latency as is."""

    model_config = ConfigDict(extra="forbid")

    mode: FaultMode = "none"
    retry_after: int = Field(default=5, ge=0, le=86_400)
    latency_ms: int | None = Field(default=None, ge=0, le=3_600_000)


class ControlEndpoints(EmulatorState):
    """The ``/_emulator/*`` handlers."""

    async def handle_stats(self, request: web.Request) -> web.Response:
        """``GET /_emulator/stats``."""
        self.requests_by_kind["control"] += 1
        return web.json_response(self.stats())

    async def handle_reset(self, request: web.Request) -> web.Response:
        """``POST /_emulator/reset``: zero the counters."""
        self.reset_counters()
        self.requests_by_kind["control"] += 1
        return web.json_response({"reset": True})

    async def handle_get_fault(self, request: web.Request) -> web.Response:
        """``GET /_emulator/fault``."""
        self.requests_by_kind["control"] += 1
        return web.json_response(self._fault_json())

    async def handle_put_fault(self, request: web.Request) -> web.Response:
        """``PUT /_emulator/fault`` with ``{"mode", "retry_after", "latency_ms"}``."""
        self.requests_by_kind["control"] += 1
        try:
            settings = _FaultRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            problems = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_input=False, include_url=False)
            ]
            return web.json_response({"error": "invalid fault", "problems": problems}, status=400)
        self.set_fault(settings.mode, settings.retry_after, settings.latency_ms)
        return web.json_response(self._fault_json())

    def _fault_json(self) -> dict[str, Any]:
        """Return the current global fault settings."""
        return {
            "mode": self.fault.mode,
            "retry_after": self.fault.retry_after,
            "latency_ms": self.latency_ms,
        }
