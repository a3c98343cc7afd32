"""One request id and one row per request, in process (ASGI, no Ray): validation errors, unknown
routes, exceptions, client disconnects and cancellation, the JSON application log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import API_KEY, build_test_service, call
from sqlalchemy import select

from flywheel.db import Prediction, make_engine
from serving.api import create_api
from serving.app_logging import log_path


@pytest.fixture(scope="module")
def service(smoke_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    svc = build_test_service(tmp_path_factory.mktemp("request-log-runtime"), smoke_onnx)
    yield svc
    svc.close()


def rows(service, client_id: str) -> list:
    assert service.logger.flush(30)
    engine = make_engine(service.settings.resolved_database_url)
    with engine.connect() as conn:
        found = conn.execute(select(Prediction).where(Prediction.client_id == client_id)).all()
    engine.dispose()
    return found


def json_log(service) -> list[dict]:
    path = log_path(service.settings.resolved_log_dir)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_request_is_one_row_with_the_same_id_everywhere(service, clip1: bytes) -> None:
    client = f"every-{uuid.uuid4().hex[:8]}"
    h = {"X-Client-Id": client}
    requests = [
        ("POST", "/v1/diarize", clip1, 200),
        ("POST", "/v1/diarize?num_speakers=abc", clip1, 422),  # refused by FastAPI's validation
        ("POST", "/v1/diarize?num_speakers=0", clip1, 422),
        ("POST", "/v1/diarize", b"junk", 415),
        ("POST", "/v1/nowhere", clip1, 404),
        ("GET", "/v1/diarize", None, 405),
    ]
    ids = []
    for method, url, body, status in requests:
        r = call(service, method, url, content=body, headers=h)
        assert r.status_code == status, (url, r.text)
        assert len(r.headers.get_list("x-request-id")) == 1
        if status in (200, 415, 422):
            assert r.json()["request_id"] == r.headers["x-request-id"]
        ids.append(r.headers["x-request-id"])
    call(service, "GET", "/v1/health", headers=h)  # read-only endpoints are not logged
    found = {r.request_id: r for r in rows(service, client)}
    assert sorted(found) == sorted(ids)  # one row each, under the id the client saw
    for (*_, status), rid in zip(requests, ids, strict=True):
        assert found[rid].http_status == status
        assert (found[rid].status == "ok") == (status == 200)
    assert "num_speakers" in found[ids[1]].error and "404" in found[ids[4]].error


def test_an_exception_is_a_logged_500_with_the_request_id(service, clip1: bytes, monkeypatch) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(service.backend, "diarize", broken)
    client = f"boom-{uuid.uuid4().hex[:8]}"
    r = call(service, "POST", "/v1/diarize", content=clip1, headers={"X-Client-Id": client})
    assert r.status_code == 500 and r.json()["request_id"] == r.headers["x-request-id"]
    [row] = rows(service, client)
    assert row.request_id == r.headers["x-request-id"] and "model exploded" in row.error
    lines = [x for x in json_log(service) if x.get("request_id") == row.request_id]
    assert any(x["level"] == "ERROR" and "model exploded" in x.get("exc", "") for x in lines)
    assert any(x["logger"] == "serving.access" and x["http_status"] == 500 for x in lines)


def test_a_client_request_id_is_kept_unless_it_repeats_or_does_not_fit(service, clip1: bytes) -> None:
    mine = str(uuid.uuid4())
    first = call(service, "POST", "/v1/diarize", content=clip1, headers={"X-Request-Id": mine})
    again = call(service, "POST", "/v1/diarize", content=clip1, headers={"X-Request-Id": mine})
    odd = call(service, "POST", "/v1/diarize", content=clip1, headers={"X-Request-Id": "x" * 300})
    sql = f"'; DROP TABLE predictions; -- {uuid.uuid4().hex[:4]}"
    quoted = call(service, "POST", "/v1/diarize", content=clip1, headers={"X-Request-Id": sql})
    assert first.json()["request_id"] == mine
    assert again.json()["request_id"] != mine  # a repeat would collide with the first row
    assert odd.json()["request_id"] != "x" * 300 and len(odd.json()["request_id"]) == 36
    assert quoted.json()["request_id"] == sql  # bound parameters: just a string
    found = {r.request_id for r in rows_by_id(service, [mine, sql])}
    assert found == {mine, sql}


def rows_by_id(service, ids: list[str]) -> list:
    assert service.logger.flush(30)
    engine = make_engine(service.settings.resolved_database_url)
    with engine.connect() as conn:
        found = conn.execute(select(Prediction).where(Prediction.request_id.in_(ids))).all()
    engine.dispose()
    return found


async def _asgi(service, receive, client: str) -> list[dict]:
    """Run one POST through the app with a hand-made ``receive``; returns what it sent."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/diarize",
        "raw_path": b"/v1/diarize",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-api-key", API_KEY.encode()), (b"x-client-id", client.encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    await create_api(service)(scope, receive, send)
    return sent


def test_client_disconnect_mid_upload_is_a_499_row(service, clip1: bytes) -> None:
    messages = iter(
        [{"type": "http.request", "body": clip1[:2000], "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict:
        return next(messages)

    client = f"gone-{uuid.uuid4().hex[:8]}"
    asyncio.run(_asgi(service, receive, client))
    [row] = rows(service, client)
    assert (row.http_status, row.status) == (499, "client_closed")
    assert "disconnected" in row.error


def test_a_receive_that_raises_is_a_499_row_not_a_500(service, clip1: bytes) -> None:
    """Behind Ray Serve the body arrives through a call to the proxy; when the client goes away the
    proxy cancels that call and ``receive()`` raises (Ray's TaskCancelledError), which is the client
    leaving, not a server error."""
    messages = iter([{"type": "http.request", "body": clip1[:2000], "more_body": True}])

    class TaskCancelledError(Exception):
        pass

    async def receive() -> dict:
        for message in messages:
            return message
        raise TaskCancelledError("Task: 14ad3c51 was cancelled.")

    client = f"raise-{uuid.uuid4().hex[:8]}"
    asyncio.run(_asgi(service, receive, client))
    [row] = rows(service, client)
    assert (row.http_status, row.status) == (499, "client_closed")
    assert "TaskCancelledError" in row.error


def test_a_request_cancelled_by_the_proxy_is_a_499_row(service, clip1: bytes) -> None:
    async def receive() -> dict:
        await asyncio.sleep(3600)  # the upload stalls; the proxy gives up on the client
        return {"type": "http.disconnect"}

    async def go(client: str) -> None:
        task = asyncio.create_task(_asgi(service, receive, client))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    client = f"cancel-{uuid.uuid4().hex[:8]}"
    asyncio.run(go(client))
    [row] = rows(service, client)
    assert (row.http_status, row.status) == (499, "client_closed")
