"""A small typed wrapper over the Label Studio REST API (plain HTTP through ``httpx``).

Only what the review queue needs: projects, local-files storage, task import and listing, export,
users. Every failure is one of three exceptions, so callers can tell "retry later" from "fix the
token" from "a bug": :class:`LabelStudioUnavailable`, :class:`LabelStudioAuthError`,
:class:`LabelStudioAPIError` (all :class:`LabelStudioError`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx


class LabelStudioError(RuntimeError):
    """Anything that went wrong talking to Label Studio."""


class LabelStudioUnavailable(LabelStudioError):
    """The server does not answer (down, starting, wrong URL): retry later."""


class LabelStudioAuthError(LabelStudioError):
    """The server refused the API token (401/403)."""


class LabelStudioAPIError(LabelStudioError):
    """The server answered with an error status."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class LabelStudioClient:
    """Authenticated client of one Label Studio server (``Authorization: Token <token>``)."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {token}"},
            timeout=timeout_s,
            trust_env=False,  # a proxy from the environment must not see loopback traffic or the token
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; returns the decoded JSON (``None`` for an empty body)."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:  # connect refused, timeout, reset
            raise LabelStudioUnavailable(
                f"Label Studio is not reachable at {self.url} ({type(err).__name__}: {err}); "
                "start it with `flywheel label serve` (or `make label-studio`) and retry"
            ) from err
        if response.status_code in (401, 403):
            raise LabelStudioAuthError(
                f"Label Studio at {self.url} refused the API token ({response.status_code} on {path}); "
                "check FLYWHEEL_LABEL_STUDIO_TOKEN (the token is installed on the server's first start)"
            )
        if response.status_code >= 500:
            raise LabelStudioUnavailable(
                f"Label Studio at {self.url} answered {response.status_code} on {method} {path}; retry later"
            )
        if response.status_code >= 400:
            raise LabelStudioAPIError(
                f"Label Studio {method} {path} -> {response.status_code}: {response.text[:500]}",
                response.status_code,
            )
        return response.json() if response.content else None

    def _pages(self, path: str, params: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
        """Items of a paginated listing (``page``/``page_size``), in order."""
        page = 1
        while True:
            try:
                body = self.request("GET", path, params={**params, "page": page, "page_size": 100})
            except LabelStudioAPIError as err:
                if err.status_code == 404 and page > 1:  # past the last page
                    return
                raise
            items = body.get(key, []) if isinstance(body, dict) else body
            yield from items
            total = body.get("total", body.get("count")) if isinstance(body, dict) else None
            if not items or (total is not None and page * 100 >= total) or not isinstance(body, dict):
                return
            page += 1

    # -- server ---------------------------------------------------------------------------------------
    def health(self) -> bool:
        """Whether ``/health`` answers ``UP`` (no authentication needed)."""
        try:
            return self.request("GET", "/health").get("status") == "UP"
        except LabelStudioError:
            return False

    def whoami(self) -> dict[str, Any]:
        """The token's user (checks the token)."""
        return self.request("GET", "/api/current-user/whoami")

    def users(self) -> dict[int, str]:
        """User id -> e-mail of the organisation."""
        return {
            u["id"]: u.get("email") or u.get("username") or str(u["id"])
            for u in self.request("GET", "/api/users")
        }

    # -- projects -------------------------------------------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title (the lowest id when several), or ``None``."""
        matches = [
            p for p in self._pages("/api/projects", {"title": title}, "results") if p["title"] == title
        ]
        return min(matches, key=lambda p: p["id"]) if matches else None

    def create_project(self, title: str, label_config: str, **fields: Any) -> dict[str, Any]:
        return self.request(
            "POST", "/api/projects", json={"title": title, "label_config": label_config, **fields}
        )

    def get_project(self, project_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/projects/{project_id}")

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields)

    # -- storage --------------------------------------------------------------------------------------
    def local_storages(self, project_id: int) -> list[dict[str, Any]]:
        return self.request("GET", "/api/storages/localfiles", params={"project": project_id})

    def create_local_storage(self, project_id: int, path: str, title: str) -> dict[str, Any]:
        """Connect a local-files storage (must lie under the server's LOCAL_FILES_DOCUMENT_ROOT)."""
        body = {
            "project": project_id,
            "path": path,
            "title": title,
            "use_blob_urls": True,
            "regex_filter": "",
        }
        return self.request("POST", "/api/storages/localfiles", json=body)

    # -- tasks ----------------------------------------------------------------------------------------
    def tasks(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Every task of a project (id, data, counters)."""
        return self._pages("/api/tasks", {"project": project_id}, "tasks")

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        """Import tasks (with their predictions) synchronously; returns the number created."""
        body = self.request("POST", f"/api/projects/{project_id}/import", json=tasks)
        return int(body.get("task_count", 0))

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        """Submit an annotation as the token's user (what a reviewer's *Submit* does)."""
        return self.request("POST", f"/api/tasks/{task_id}/annotations", json={"result": result, **fields})

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """Tasks that have annotations, with annotations and predictions (JSON export)."""
        return self.request(
            "GET",
            f"/api/projects/{project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "false"},
        )
