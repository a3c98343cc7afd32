"""Fuzzing the API in process (ASGI, no Ray): the generated hostile corpus, then hypothesis-driven
requests built from the OpenAPI schema's parameters. Every request answers 200 or 4xx (never 5xx)
and leaves exactly one row in the prediction log, under the id of its ``X-Request-Id``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from fuzz_corpus import corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import build_test_service, call, encode
from sqlalchemy import select

from flywheel.db import Prediction, make_engine

MAX_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def service(smoke_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    svc = build_test_service(tmp_path_factory.mktemp("fuzz-runtime"), smoke_onnx, MAX_BYTES)
    yield svc
    svc.close()


def statuses_in_db(service, request_ids: list[str]) -> dict[str, list[int]]:
    """``{request_id: [http_status of each row]}`` for the given ids."""
    assert service.logger.flush(60)
    engine = make_engine(service.settings.resolved_database_url)
    out: dict[str, list[int]] = {rid: [] for rid in request_ids}
    with engine.connect() as conn:
        stmt = select(Prediction.request_id, Prediction.http_status)
        for rid, status in conn.execute(stmt.where(Prediction.request_id.in_(request_ids))):
            out[rid].append(status)
    engine.dispose()
    return out


def send(service, body: bytes, query: str, headers: dict[str, str]) -> tuple[int, str]:
    key = None if any(h.lower() in ("x-api-key", "authorization") for h in headers) else "test-api-key"
    r = call(service, "POST", f"/v1/diarize{query}", key=key, content=body, headers=headers)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    [request_id] = r.headers.get_list("x-request-id")
    if r.headers.get("content-type", "").startswith("application/json"):
        assert r.json().get("request_id") == request_id
    return r.status_code, request_id


def test_generated_corpus_answers_4xx_or_200_with_one_row_each(service) -> None:
    seen: dict[str, int] = {}
    answers: dict[str, int] = {}
    for name, body, query, headers in corpus():
        status, request_id = send(service, body, query, headers)
        seen[request_id], answers[name] = status, status
    assert len(seen) == len(answers) > 80
    assert statuses_in_db(service, list(seen)) == {rid: [status] for rid, status in seen.items()}
    # Spot checks that the corpus exercises what it claims to.
    assert answers["wav-cut-100"] == answers["ogg-cut-100"] == 415
    assert answers["gzip-ok"] == 200 and answers["gzip-bomb"] == 413 and answers["encoding-br"] == 415
    assert answers["query-?num_speakers=abc"] == 422 and answers["api-key-wrong"] == 401


def _query_strategy(schema: dict) -> st.SearchStrategy[dict[str, str]]:
    """Query strings for ``POST /v1/diarize`` from its OpenAPI parameters: values the schema allows
    and values it does not (out of range, wrong type, odd text)."""
    params = schema["paths"]["/v1/diarize"]["post"]["parameters"]
    fields: dict[str, st.SearchStrategy[str]] = {}
    for p in params:
        if p["in"] != "query":
            continue
        s = p["schema"]
        kinds = [x.get("type") for x in s.get("anyOf", [s])]
        junk = st.text(max_size=30)
        if "integer" in kinds:
            bounds = next(x for x in s.get("anyOf", [s]) if x.get("type") == "integer")
            valid = st.integers(bounds.get("minimum", 0), bounds.get("maximum", 100)).map(str)
            fields[p["name"]] = st.one_of(valid, st.integers(-(10**6), 10**6).map(str), junk)
        else:
            fields[p["name"]] = st.one_of(st.sampled_from(["json", "rttm", "fast-cnn", ""]), junk)
    return st.fixed_dictionaries({}, optional=fields)


def test_hypothesis_requests_from_the_openapi_schema(service, clip1: bytes) -> None:
    schema = call(service, "GET", "/openapi.json").json()
    one_sample = encode(np.zeros(1, dtype=np.float32))
    bodies = st.one_of(
        st.just(clip1),
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: clip1[:44] + b),  # a WAV header over junk
        st.integers(0, len(clip1)).map(lambda n: clip1[:n]),  # cut anywhere
        st.just(one_sample),
    )
    headers = st.fixed_dictionaries(
        {},
        optional={
            "Content-Type": st.sampled_from(["audio/wav", "application/octet-stream", "multipart/form-data"]),
            "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "x"]),
            "X-Client-Id": st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
        },
    )
    seen: dict[str, int] = {}

    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, query=_query_strategy(schema), extra=headers)
    def one(body: bytes, query: dict[str, str], extra: dict[str, str]) -> None:
        qs = f"?{urlencode(query)}" if query else ""
        status, request_id = send(service, body, qs, extra)
        seen[request_id] = status

    one()
    assert len(seen) >= 100
    assert statuses_in_db(service, list(seen)) == {rid: [status] for rid, status in seen.items()}
    assert 200 in seen.values() and any(400 <= s < 500 for s in seen.values())
