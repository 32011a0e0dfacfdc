"""`SmeClient`: the blocking twin of `AsyncSmeClient`, for the CLI and scripts: the same
calls, answers and retries (a unit test keeps their methods in step)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from sme.client import endpoints as ep
from sme.client.calls import Call, raise_for, retry_wait
from sme.client.errors import GatewayUnreachable, Unavailable
from sme.contracts.enrollments import EnrollmentAccepted
from sme.contracts.preview import PreviewRequest, PreviewResponse, SendTestRequest, SendTestResponse
from sme.contracts.sequences import KillSwitch, SequenceConfig, WorkspaceSettings

T = TypeVar("T")


class SmeClient:
    """The gateway at `base_url`, authenticated with the bearer `api_key` (None: no header,
    for a gateway without keys). A 429/503 with `Retry-After` of an idempotent call is
    retried at most `max_retries` times, each wait at most `max_retry_wait` seconds."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the gateway must be an http(s) URL, not {base_url!r}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send `call`, retrying as allowed, and read its answer; non-2xx raise ApiError."""
        attempt = 0
        while True:
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                raise GatewayUnreachable(
                    f"the gateway at {self._http.base_url} did not answer: {exc!r}"
                ) from exc
            wait = retry_wait(response, call, attempt, self._max_retries, self._max_retry_wait)
            if wait is None:
                raise_for(response)
                return call.read(response)
            attempt += 1
            self._sleep(wait)

    # configurations
    def list_configs(
        self, workspace_id: str, limit: int = 100, cursor: str | None = None
    ) -> ep.ConfigPage:
        return self.call(ep.list_configs(workspace_id, limit, cursor))

    def create_config(self, document: Mapping[str, Any], dry_run: bool = False) -> SequenceConfig:
        """`dry_run`: validated as the create would be (field errors as 422), nothing written."""
        return self.call(ep.create_config(document, dry_run))

    def get_config(self, config_id: str) -> SequenceConfig:
        return self.call(ep.get_config(config_id))

    def patch_config(
        self,
        config_id: str,
        changes: Mapping[str, Any],
        if_version: int | None = None,
        dry_run: bool = False,
    ) -> SequenceConfig:
        return self.call(ep.patch_config(config_id, changes, if_version, dry_run))

    def delete_config(self, config_id: str) -> None:
        self.call(ep.delete_config(config_id))

    def config_versions(self, config_id: str) -> list[dict[str, Any]]:
        return self.call(ep.config_versions(config_id))

    # preview, test sends, enrollments
    def preview(self, config_id: str | None, request: PreviewRequest) -> PreviewResponse:
        return self.call(ep.preview(config_id, request))

    def test_send(self, config_id: str, request: SendTestRequest) -> SendTestResponse:
        return self.call(ep.test_send(config_id, request))

    def enroll(self, config_id: str, batch_id: str, user_ids: list[str]) -> EnrollmentAccepted:
        return self.call(ep.enroll(config_id, batch_id, user_ids))

    # reporting
    def activities(self, config_id: str, **filters: Any) -> dict[str, Any]:
        return self.call(ep.activities(config_id, **filters))

    def metrics(
        self,
        config_id: str,
        date_from: date | None = None,
        date_to: date | None = None,
        granularity: ep.Granularity = "day",
    ) -> dict[str, Any]:
        return self.call(ep.metrics(config_id, date_from, date_to, granularity))

    def dashboard(
        self,
        config_id: str,
        date_from: date | None = None,
        date_to: date | None = None,
        granularity: ep.Granularity = "day",
    ) -> dict[str, Any]:
        return self.call(ep.dashboard(config_id, date_from, date_to, granularity))

    def report(
        self,
        config_id: str,
        report_format: ep.ReportFormat = "csv",
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> bytes:
        return self.call(ep.report(config_id, report_format, date_from, date_to))

    def overview(
        self, date_from: date | None = None, date_to: date | None = None
    ) -> dict[str, Any]:
        return self.call(ep.overview(date_from, date_to))

    def sql(self, query: str, max_rows: int = 1000) -> ep.SqlAnswer:
        return self.call(ep.sql(query, max_rows))

    # workspaces
    def get_workspace(self, workspace_id: str) -> WorkspaceSettings:
        return self.call(ep.get_workspace(workspace_id))

    def put_workspace(self, workspace_id: str, settings: Mapping[str, Any]) -> WorkspaceSettings:
        return self.call(ep.put_workspace(workspace_id, settings))

    def kill_switch(self, workspace_id: str, engaged: bool) -> KillSwitch:
        return self.call(ep.kill_switch(workspace_id, engaged))

    def erase_user(self, workspace_id: str, user_id: str) -> dict[str, Any]:
        return self.call(ep.erase_user(workspace_id, user_id))

    def erasure(self, workspace_id: str, erasure_id: str) -> dict[str, Any]:
        return self.call(ep.erasure(workspace_id, erasure_id))

    def ready(self) -> bool:
        """Whether the gateway is ready (`/readyz`): a 503 is an answer here, not an error."""
        try:
            return self.call(ep.ready())
        except Unavailable:
            return False
