"""The whole flywheel, every component real: requests through a live Ray Serve endpoint -> the
prediction log -> teacher pseudo-labels -> a real Label Studio (annotations created through its API,
as a reviewer's Submit does) -> ``flywheel label pull`` -> a new DVC dataset version (git commit +
``dvc.lock``, pushed to a DVC remote) -> ``flywheel retrain`` (the smoke recipe) -> a new version in
a real MLflow server -> the gate -> served by hot swap.

The DVC + git workspace is a temporary one (this repository's ``dvc.yaml`` and ``.gitignore``, the
stages' code, a params.yaml with the test's gate set and recipe), so ``flywheel retrain`` commits
there and not here. The served model follows its own registered model name on the session's MLflow
server. The gate set is three smoke conversations and the thresholds are wide (a one-epoch smoke
model is not a good model: the 0.20 / 0.30 boundaries are tested in
``tests/registry/test_gate_rules.py``); the rule, its signed record and the alias move are the real
ones. The reviewer's turns are the conversations' exact references.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from service_fixtures import copy_smoke_gate_set, free_port, serve_app
from typer.testing import CliRunner

from cli.main import app
from flywheel.config import REPO_ROOT, get_settings
from flywheel.pretrained import CAMPPLUS_ONNX, SEGMENTATION_ONNX
from flywheel.segments import read_rttm, turns_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SEGMENTATION_ONNX.exists() and CAMPPLUS_ONNX.exists()),
        reason="models/teacher/*.onnx missing: run `bash scripts/setup_teacher.sh`",
    ),
]

API_KEY = "e2e-api-key"
MODEL = f"fast-cnn-e2e-{uuid.uuid4().hex[:8]}"  # its own registered model on the shared MLflow server
STAGE_CODE = (
    "pipelines/reviewed_dataset.py",
    "training/reviewed_pool.py",
    "training/distill_pool.py",
    "training/distill.py",
    "training/export.py",
)


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def run(args: list[str], cwd: Path) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout


def git(root: Path, *args: str) -> str:
    return run(["git", *args], root).strip()


def dvc(root: Path, *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], root)


@pytest.fixture(scope="module")
def gate_set(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two smoke test conversations and the confirm one: neither the traffic nor the dev set."""
    return copy_smoke_gate_set(smoke_data, tmp_path_factory.mktemp("gate-set"))


@pytest.fixture(scope="module")
def workspace(
    smoke_data: Path, gate_set: Path, params: dict, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A git + DVC workspace (local DVC remote beside it) holding the retrain stages and their code."""
    base = tmp_path_factory.mktemp("flywheel")
    root = base / "workspace"
    root.mkdir()
    for rel in ("dvc.yaml", ".gitignore", *STAGE_CODE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, root / rel)
    (root / "models" / "teacher").mkdir(parents=True)
    for onnx in (SEGMENTATION_ONNX, CAMPPLUS_ONNX):
        (root / "models" / "teacher" / onnx.name).symlink_to(onnx)
    local = copy.deepcopy(params)
    local["promotion"] = {
        "gate_set": str(gate_set),
        "max_der": 5.0,  # wide: a smoke model (see the module docstring)
        "beta_max_der": 5.0,
        "tolerance": 5.0,
        "bootstrap": {"samples": 200, "require_better": False},
    }
    local["retrain"] = {**local["retrain"], "min_new_items": 2, "recipe": "retrain-smoke"}
    local["retrain"].update(model_name=MODEL, quantize=None)
    dev = smoke_data / "conversations" / "smoke" / "dev"
    local["distill"]["fast-cnn"]["retrain-smoke"]["dev_set"] = str(dev)
    (root / "params.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
    git(root, "init", "--quiet")
    git(root, "config", "user.email", "e2e@flywheel.test")
    git(root, "config", "user.name", "flywheel e2e")
    dvc(root, "init", "--quiet")
    dvc(root, "remote", "add", "--default", "local", str(base / "dvc-remote"))
    dvc(root, "config", "core.autostage", "true")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "workspace")
    return root


@pytest.fixture(scope="module")
def services_env(
    mlflow_server, smoke_onnx: Path, workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The environment of this test, its DVC stages and the Serve processes: the MLflow server, the
    gate key, the workspace's params, caches and reports in temporary folders (the session's smoke
    model is built before, under the repository's settings, as for every other test)."""
    tmp = tmp_path_factory.mktemp("e2e-runtime")
    env = {
        "FLYWHEEL_MLFLOW_TRACKING_URI": mlflow_server.url,
        "FLYWHEEL_GATE_KEY": uuid.uuid4().hex,
        "FLYWHEEL_PARAMS_FILE": str(workspace / "params.yaml"),
        "FLYWHEEL_REPORTS_DIR": str(tmp / "reports"),
        "FLYWHEEL_MODEL_CACHE_DIR": str(tmp / "model-cache"),
        "FLYWHEEL_RUNTIME_DIR": str(tmp / "serve"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        yield env
    get_settings.cache_clear()


@dataclass
class Service:
    url: str
    runtime: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.runtime / 'predictions.db'}"


@pytest.fixture(scope="module")
def service(services_env: dict, smoke_onnx: Path) -> Iterator[Service]:
    """v1 of the test's model (the smoke model, through the gate), served by a live Serve app whose
    arm follows the registry (polled every second)."""
    from registry.models import register
    from registry.promote import promote
    from serving import control

    url = services_env["FLYWHEEL_MLFLOW_TRACKING_URI"]
    v1 = register(MODEL, smoke_onnx, {}, dataset_version="smoke", tracking_uri=url)
    assert promote(MODEL, v1, tracking_uri=url).action == "champion"
    port = random.randint(20000, 29000)
    config = control.load_config()
    config["http_options"]["port"] = port
    application = config["applications"][0]
    application["args"]["embed_arms"] = False
    application["deployments"][0]["num_replicas"] = 1
    application["args"]["arms"] = {
        "fast-cnn": {
            "model_name": MODEL,
            "tracking_uri": url,
            "poll_s": 1,
            "deployment": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.5}},
        }
    }
    application["deployments"][0]["user_config"] = {"weights": {"fast-cnn": 1.0}}
    env = {**services_env, "FLYWHEEL_API_KEYS": API_KEY}
    with serve_app(config, env, random.randint(30100, 30800)):
        yield Service(f"http://127.0.0.1:{port}", Path(services_env["FLYWHEEL_RUNTIME_DIR"]))


def diarize(service: Service, wav: Path) -> dict:
    r = httpx.post(
        f"{service.url}/v1/diarize", content=wav.read_bytes(), headers={"X-API-Key": API_KEY}, timeout=120
    )
    assert r.status_code == 200, r.text
    return r.json()


def logged(service: Service) -> dict[str, dict]:
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from flywheel.db import Prediction, make_engine

    engine = make_engine(service.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Prediction.__table__)).mappings().all()
    except OperationalError:  # the log writer creates the tables with its first batch: not yet
        return {}
    finally:
        engine.dispose()
    return {r["request_id"]: dict(r) for r in rows}


def served_version(service: Service) -> str | None:
    arms = httpx.get(f"{service.url}/v1/models", timeout=30).json()["arms"]
    return next((a.get("model_version") for a in arms if a["arm"] == "fast-cnn" and a["available"]), None)


def label_env(settings, **extra: str) -> dict[str, str]:
    """What points ``flywheel label`` at the test's Label Studio project."""
    return {
        "FLYWHEEL_LABEL_STUDIO_URL": settings.url,
        "FLYWHEEL_LABEL_STUDIO_TOKEN": settings.label_studio_token,
        "FLYWHEEL_LABEL_STUDIO_PASSWORD": settings.label_studio_password,
        "FLYWHEEL_LABEL_STUDIO_PROJECT": settings.label_studio_project,
        "FLYWHEEL_LABEL_STUDIO_DIR": str(settings.label_studio_dir),
        "FLYWHEEL_LABEL_STUDIO_MEDIA_DIR": str(settings.media_dir),
        **extra,
    }


def review(client, task: dict, turns: list[tuple[float, float, str]]) -> None:
    """Submit the reviewer's turns (recording times) for one task, through the API."""
    offset, duration = float(task["data"]["offset"]), float(task["data"]["duration"])
    names = {spk: f"Speaker {i + 1}" for i, spk in enumerate(dict.fromkeys(s for _, _, s in sorted(turns)))}
    result = [
        {
            "from_name": "speaker",
            "to_name": "audio",
            "type": "labels",
            "origin": "manual",
            "value": {"start": s - offset, "end": e - offset, "channel": 0, "labels": [names[spk]]},
        }
        for s, e, spk in turns
        if offset <= s and e <= offset + duration
    ]
    client.create_annotation(task["id"], result, lead_time=30.0)


def invoke(args: list[str], env: dict[str, str] | None = None):
    result = CliRunner().invoke(app, args, env=env)
    print(result.output)
    return result


def model_versions(url: str) -> list:
    from registry.models import all_versions, client_for

    client, _ = client_for(url)
    return all_versions(client, MODEL)


def test_requests_to_reviews_to_a_gated_model_served_by_hot_swap(
    service: Service, workspace: Path, label_studio, ls_settings, smoke_data: Path, tmp_path: Path
) -> None:
    from registry.gate import servable_record
    from registry.models import client_for

    url = get_settings().mlflow_tracking_uri
    step = Steps()
    conversations = smoke_data / "conversations" / "smoke"
    traffic = [
        sorted((conversations / "tune").glob("*.wav"))[0],
        sorted((conversations / "dev").glob("*.wav"))[1],
    ]
    truth = {wav: turns_of(read_rttm(wav.with_suffix(".rttm"))[wav.stem]) for wav in traffic}

    step("1")
    # 1. requests through the live endpoint, answered by the gated v1, one log row each with its audio
    assert wait_for(lambda: served_version(service) == "1", 60), "the arm never served v1"
    answers = {wav: diarize(service, wav) for wav in traffic}
    assert {a["model_version"] for a in answers.values()} == {"1"}
    request_of = {a["request_id"]: wav for wav, a in answers.items()}
    assert wait_for(lambda: set(request_of) <= set(logged(service)), 60), "requests not in the log"
    rows = logged(service)
    assert all(rows[r]["status"] == "ok" and rows[r]["model_version"] == "1" for r in request_of)
    audio_dir = service.runtime / "audio"

    step("2")
    # 2. teacher pseudo-labels for the logged audio
    folders = ["--audio-dir", str(audio_dir), "--out-dir", str(tmp_path / "pseudo-labels")]
    pl = invoke(
        ["pseudo-label", "--local", "--no-progress", "--database-url", service.database_url, *folders]
    )
    assert pl.exit_code == 0 and "2 labelled" in pl.output, pl.output

    step("3")
    # 3. the uncertain ones to the real Label Studio, the teacher's turns as pre-annotations
    env = label_env(ls_settings, FLYWHEEL_AUDIO_DIR=str(audio_dir))
    push = invoke(
        ["label", "push", "--from-pseudo-labels", "--budget", "2", "--database-url", service.database_url],
        env,
    )
    assert push.exit_code == 0 and "2 new tasks from 2 items" in push.output, push.output
    with label_studio.client() as client:
        project = client.find_project(ls_settings.label_studio_project)
        tasks = [client.request("GET", f"/api/tasks/{t['id']}") for t in client.tasks(project["id"])]
        assert {t["data"]["item_id"] for t in tasks} == set(request_of)
        assert all(t["predictions"] and t["predictions"][0]["result"] for t in tasks)  # pre-annotated
        first, second = sorted(tasks, key=lambda t: t["data"]["item_id"])

        step("4")
        # 4. a reviewer submits the first one: one new reviewed item, below retrain.min_new_items (2)
        review(client, first, truth[request_of[first["data"]["item_id"]]])
    reviewed = workspace / "data" / "reviewed"
    pull = invoke(["label", "pull", "--out-dir", str(reviewed)], env)
    assert pull.exit_code == 0 and "1 new and 0 updated reviews" in pull.output, pull.output
    head = git(workspace, "rev-parse", "HEAD")
    early = invoke(["retrain", "--root", str(workspace)])
    assert (
        early.exit_code == 0 and "1 new reviewed item(s)" in early.output and "nothing to do" in early.output
    )
    assert git(workspace, "rev-parse", "HEAD") == head and not (workspace / "data" / "reviewed-set").exists()

    step("5")
    # 5. the second review arrives; a retrain with MLflow down records the dataset version, trains,
    #    and stops at the registration (nothing registered), saying why
    with label_studio.client() as client:
        review(client, second, truth[request_of[second["data"]["item_id"]]])
    assert invoke(["label", "pull", "--out-dir", str(reviewed)], env).exit_code == 0
    down = f"http://127.0.0.1:{free_port()}"
    failed = invoke(["retrain", "--root", str(workspace), "--tracking-uri", down])
    assert failed.exit_code == 1 and "MLflow unreachable" in failed.output, failed.output
    assert "Running stage 'retrain-distill'" in failed.output
    assert [v.version for v in model_versions(url)] == ["1"]
    dataset = workspace / "data" / "reviewed-set"
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    md5 = lock["reviewed-dataset"]["outs"][0]["md5"].removesuffix(".dir")
    dataset_commit = git(workspace, "rev-parse", "HEAD")
    assert dataset_commit != head and md5 in git(workspace, "show", "HEAD:dvc.lock")
    assert "Dataset version data/reviewed-set@" in git(workspace, "log", "-1", "--format=%s")
    # the version is self-contained (the audio as it was served) and on the DVC remote
    for request_id, wav in request_of.items():
        stored = audio_dir / rows[request_id]["audio_sha256"][:2] / f"{rows[request_id]['audio_sha256']}.wav"
        assert (dataset / f"{request_id}.wav").read_bytes() == stored.read_bytes()
        reviewed_turns = turns_of(read_rttm(dataset / f"{request_id}.rttm")[request_id])
        assert spans(reviewed_turns) == spans(truth[wav])  # the reviewer's turns, speakers renamed
        assert len({k for _, _, k in reviewed_turns}) == len({k for _, _, k in truth[wav]})
    assert json.loads(dvc(workspace, "status", "--cloud", "--json", "reviewed-dataset") or "{}") == {}
    pool = json.loads((workspace / "data" / "distill" / "reviewed" / "shard-000" / "info.json").read_text())
    assert pool["chunks"] >= 8 and pool["source"] == "reviewed"  # 2 x 30-40 s: >= 3 windows each

    step("6")
    # 6. MLflow back: the next retrain finishes what was left (the gate stage only)
    done = invoke(["retrain", "--root", str(workspace)])
    assert done.exit_code == 0, done.output
    assert (
        "Running stage 'retrain-gate'" in done.output and "Running stage 'retrain-distill'" not in done.output
    )
    client, _ = client_for(url)
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["dataset_version"] == f"data/reviewed-set@{md5[:12]}"
    assert v2.tags["dataset_commit"] == dataset_commit and v2.tags["origin"] == "retrain"
    assert v2.tags["dataset_items"] == "2" and v2.tags["retrain_recipe"] == "distill.fast-cnn.retrain-smoke"
    record = servable_record(v2, allowed=frozenset({"champion"}))  # the gate's signed record
    assert record.champion_version == "1" and record.files == 3
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"
    decision = json.loads((workspace / "reports" / "retrain" / "gate.json").read_text())
    assert decision["action"] == "champion" and decision["version"] == "2"
    assert git(workspace, "log", "-1", "--format=%s").startswith(f"Retrained {MODEL} v2 on dataset")
    assert git(workspace, "status", "--porcelain", "--untracked-files=no") == ""

    step("7")
    # 7. served by hot swap: the arm picks v2 up without a restart, the log says so
    assert wait_for(lambda: served_version(service) == "2", 60), "the arm never swapped to v2"
    after = diarize(service, traffic[0])
    assert after["model_version"] == "2"
    assert wait_for(lambda: logged(service).get(after["request_id"], {}).get("model_version") == "2", 30)

    step("8")
    # 8. twice with no new data: nothing
    head = git(workspace, "rev-parse", "HEAD")
    again = invoke(["retrain", "--root", str(workspace)])
    assert (
        again.exit_code == 0 and "0 new reviewed item(s)" in again.output and "nothing to do" in again.output
    )
    assert git(workspace, "rev-parse", "HEAD") == head
    assert [v.version for v in model_versions(url)] == ["1", "2"]
    step("end")


class Steps:
    """Prints how long each step of the test took (``pytest -rP`` shows it)."""

    def __init__(self) -> None:
        self.t0, self.name = time.monotonic(), "setup"

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        print(f"e2e step {self.name}: {now - self.t0:.1f} s")
        self.t0, self.name = now, name


def spans(turns: list) -> list[tuple[float, float]]:
    return sorted((round(s, 3), round(e, 3)) for s, e, _ in turns)
