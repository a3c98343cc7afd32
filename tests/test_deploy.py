"""The deployment files, checked without Docker or Kubernetes (neither runs here; docs/deployment.md).

* ``docker-compose.yml`` against the Compose Specification JSON schema (vendored in deploy/schemas/,
  validated with ``jsonschema``), then against the code: every environment variable the project's
  settings read (found in the code: the pydantic-settings classes of the runtime packages and their
  direct ``os.environ`` reads) is given to every service that runs the project image and listed in
  ``.env.example``; defaults agree with the code's; no secret has a value; ports are on loopback;
  long-running services have healthchecks; every ``build:`` has its Dockerfile, whose inputs exist.
* ``deploy/kuberay/``: the RayService and RayJobs against a hand-written schema of KubeRay's ``ray.io/v1``
  fields (deploy/schemas/README.md), their pod templates against Kubernetes' own schemas
  (``kubernetes-validate``), the Serve config inside against serving/serve_config.yaml, and the
  ConfigMap + Secret keys against the same list of variables.

Each validator is also shown a broken copy, so a check that silently accepts everything fails.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import importlib
import importlib.util
import json
import re
import shlex
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERAY = ROOT / "deploy" / "kuberay"
SERVE_DOCKERFILE = "docker/serve.Dockerfile"
# Packages whose code runs in the serve image (tests, benchmarks and scripts do not read deployment settings).
RUNTIME_PACKAGES = ("flywheel", "serving", "labeling", "experiments", "registry", "training", "pipelines")
# FLYWHEEL_* names the code reads that are not deployment settings, with why. Each must still occur in
# the code (checked), so this list cannot outlive its reason.
NOT_DEPLOYMENT_SETTINGS = {
    "FLYWHEEL_STANDALONE_ARGS": "serving/standalone.py: set by its launcher for the child uvicorn process",
    "FLYWHEEL_TEACHER_PYTHON": "the peers' own venv (.venv-teacher, benchmarks); not in any image",
}
# Entries of serving.control.ray_env() that only make sense for the one-machine loopback Ray.
LOOPBACK_ONLY_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|_KEY|_KEYS|ACCESS_KEY_ID)$")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}; $${...} is escaped.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
LOOPBACK = "127.0.0.1"


# ------------------------------------------------------------------------------------------- loading


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def project_services() -> dict[str, dict[str, Any]]:
    """Services that run the serve image (built from docker/serve.Dockerfile, or its tag)."""
    tag = services()["ray-head"]["image"]
    return {
        name: svc
        for name, svc in services().items()
        if (svc.get("build") or {}).get("dockerfile") == SERVE_DOCKERFILE or svc.get("image") == tag
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (list form ``K=V`` too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def env_file_entries(path: Path) -> dict[str, tuple[str, bool]]:
    """``NAME -> (value, set)`` of an env file; commented ``# NAME=value`` lines count as listed, unset."""
    out: dict[str, tuple[str, bool]] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)", line.strip())
        if match:
            out[match["name"]] = (match["value"], match["comment"] is None)
    return out


def kuberay_manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((KUBERAY / name).read_text())


def kuberay_docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBERAY / name).read_text()) if doc]


RAY_MANIFESTS = ("rayservice.yaml", "rayjob-pseudo-label.yaml", "rayjob-retrain.yaml")


def serve_config() -> dict[str, Any]:
    from serving.control import load_config

    return load_config()


def arms() -> list[str]:
    return list(serve_config()["applications"][0]["args"]["arms"])


def sync_module() -> Any:
    """deploy/kuberay/sync_serve_config.py (not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location("sync_serve_config", KUBERAY / "sync_serve_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(requirements: list[str], name: str) -> str:
    for req in requirements:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^]]*\])?==(?P<version>\S+)", req.strip())
        if match:
            return match["version"]
    raise AssertionError(f"{name} is not pinned with == in {requirements}")


# ------------------------------------------------------------- what the code reads from the environment


def _python_files() -> list[Path]:
    return [p for pkg in RUNTIME_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


@cache
def settings_classes() -> tuple[type, ...]:
    """Every pydantic-settings class defined in the runtime packages (found by reading the code)."""
    from pydantic_settings import BaseSettings

    for path in _python_files():
        tree = ast.parse(path.read_text())
        defines = any(
            isinstance(node, ast.ClassDef)
            and any(
                isinstance(b, ast.Name | ast.Attribute) and "Settings" in ast.unparse(b) for b in node.bases
            )
            for node in ast.walk(tree)
        )
        if defines and "pydantic_settings" in path.read_text():
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    found, todo = [], list(BaseSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in RUNTIME_PACKAGES:
            found.append(cls)
    return tuple(sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}"))


def field_env_names(cls: type) -> dict[str, Any]:
    """``env var -> FieldInfo`` of a settings class: its validation alias (the first of AliasChoices, the
    project's own name), else ``env_prefix + FIELD``."""
    from pydantic import AliasChoices

    prefix = cls.model_config.get("env_prefix", "")
    out = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            env = next(c for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            env = alias
        else:
            env = prefix + name
        out[env.upper()] = field
    return out


@cache
def settings_fields() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in settings_classes():
        out.update(field_env_names(cls))
    return out


@cache
def direct_reads() -> frozenset[str]:
    """``FLYWHEEL_*`` names written as string constants in the runtime code (``os.environ`` reads, key
    constants); a name ending in ``_`` is a template (``FLYWHEEL_MODEL_PATH_<ARM>``), expanded per arm."""
    from serving.champion import env_var

    names = set()
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and re.fullmatch(r"FLYWHEEL_[A-Z0-9_]+", str(node.value)):
                names.add(node.value)
    expanded = set()
    for name in names:
        if name.endswith("_"):
            assert env_var("x").startswith(name), f"unknown environment-name template {name!r} in the code"
            expanded |= {env_var(arm) for arm in arms()}
        else:
            expanded.add(name)
    return frozenset(expanded)


@cache
def deployment_env_vars() -> frozenset[str]:
    """Every environment variable of the project's code that a deployment must provide."""
    return frozenset((set(settings_fields()) | direct_reads()) - set(NOT_DEPLOYMENT_SETTINGS))


def test_the_settings_discovery_finds_the_known_classes_and_reads() -> None:
    names = {f"{c.__module__}.{c.__name__}" for c in settings_classes()}
    assert {
        "flywheel.config.Settings",
        "serving.settings.ServingSettings",
        "labeling.settings.LabelingSettings",
    } <= names
    variables = deployment_env_vars()
    for expected in ("FLYWHEEL_DATABASE_URL", "FLYWHEEL_MLFLOW_TRACKING_URI", "FLYWHEEL_LABEL_STUDIO_TOKEN"):
        assert expected in variables
    assert {"FLYWHEEL_GATE_KEY", "FLYWHEEL_MODEL_PATH_FAST_CNN", "FLYWHEEL_PRETRAINED_DIR"} <= variables
    found = direct_reads() | set(settings_fields())
    for name in NOT_DEPLOYMENT_SETTINGS:
        assert name in found, f"{name} is no longer read by the code: drop it from NOT_DEPLOYMENT_SETTINGS"


# --------------------------------------------------------------------------------- compose: the spec


def compose_validator() -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    validator = compose_validator()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_the_compose_validator_refuses_a_broken_file() -> None:
    validator = compose_validator()
    broken = copy.deepcopy(compose())
    broken["services"]["ray-head"]["buidl"] = {"context": "."}  # misspelt key
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose())
    broken["services"]["ray-head"]["healthcheck"] = "curl it"  # must be a mapping
    assert not validator.is_valid(broken)


# ------------------------------------------------------------------------ compose: against the code


def test_project_services_get_every_environment_variable_the_code_reads() -> None:
    projects = project_services()
    assert {"ray-head", "db-migrate", "pseudo-label"} <= set(projects)
    wanted = deployment_env_vars()
    for name, svc in projects.items():
        missing = sorted(wanted - set(environment(svc)))
        assert not missing, f"service {name} lacks {missing} (docker-compose.yml, x-flywheel-env)"


def test_env_example_lists_every_variable() -> None:
    listed = set(env_file_entries(ENV_EXAMPLE))
    missing = sorted(deployment_env_vars() - listed)
    assert not missing, f".env.example does not list {missing}"
    interpolated = {m["name"] for m in INTERPOLATION.finditer(COMPOSE.read_text())}
    missing = sorted(interpolated - listed)
    assert not missing, f"docker-compose.yml reads {missing} from .env, .env.example does not list them"
    # and nothing stale: every FLYWHEEL_ name listed is read by the code
    stale = sorted(n for n in listed if n.startswith("FLYWHEEL_") and n not in deployment_env_vars())
    assert not stale, f".env.example lists {stale}, which no code reads"


def _same_value(text: str, default: Any) -> bool:
    if default is None:
        return text == ""
    if isinstance(default, bool):
        return text.lower() == str(default).lower()
    if isinstance(default, int | float):
        return float(text) == float(default)
    return text == str(default)


def test_compose_and_env_example_defaults_are_the_codes() -> None:
    fields = settings_fields()
    env = compose()["x-flywheel-env"]
    checked = 0
    for name, value in env.items():
        match = INTERPOLATION.fullmatch(str(value))
        if name not in fields or match is None or match["name"] != name or match["op"] != ":-":
            continue
        default = fields[name].default
        assert _same_value(match["arg"], default), f"docker-compose.yml: {name} defaults to {match['arg']!r}"
        checked += 1
    assert checked >= 10
    for name, (value, is_set) in env_file_entries(ENV_EXAMPLE).items():
        if is_set and name in fields and not SECRET_NAME.search(name):
            assert _same_value(value, fields[name].default), (
                f".env.example: {name}={value!r} is not the default"
            )


def _secret_findings(path_label: str, env: dict[str, str]) -> list[str]:
    bad = []
    for key, value in env.items():
        for m in INTERPOLATION.finditer(value):
            if SECRET_NAME.search(m["name"]) and m["op"] in (":-", "-") and m["arg"]:
                bad.append(f"{path_label} {key}: ${{{m['name']}}} has a default value")
        literal = INTERPOLATION.sub("", value)
        if SECRET_NAME.search(key) and literal.strip() and literal.lower() not in ("true", "false"):
            bad.append(f"{path_label} {key}: a literal value")
        credentials = re.search(r"://[^/:@\s]+:(?P<password>[^@\s]+)@", value)
        if credentials and not INTERPOLATION.fullmatch(credentials["password"]):
            bad.append(f"{path_label} {key}: a password in a URL")
    return bad


def test_no_secret_is_committed() -> None:
    bad = []
    for name, svc in services().items():
        bad += _secret_findings(f"services.{name}", environment(svc))
    for anchor in ("x-flywheel-env", "x-minio-credentials"):
        bad += _secret_findings(anchor, {k: str(v) for k, v in compose()[anchor].items()})
    assert not bad, "\n".join(bad)
    required = {m["name"] for m in INTERPOLATION.finditer(COMPOSE.read_text()) if m["op"] in (":?", "?")}
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "FLYWHEEL_GATE_KEY"} <= required
    for path in (ENV_EXAMPLE, KUBERAY / "secrets.env.example"):
        entries = env_file_entries(path)
        for name, (value, _) in entries.items():
            assert not (SECRET_NAME.search(name) and value), f"{path.name}: {name} has a value"
    entries = env_file_entries(ENV_EXAMPLE)
    for name in required:
        assert entries.get(name, ("", False))[1], f".env.example must set {name}= (compose requires it)"
    # the self-check of the rule
    assert _secret_findings("x", {"A_PASSWORD": "hunter2"}) and _secret_findings("x", {"U": "pg://a:b@h/d"})


def _published(port: Any) -> tuple[str | None, str]:
    if isinstance(port, dict):
        return port.get("host_ip"), str(port.get("published", ""))
    parts = str(port).split(":")
    return (parts[0], parts[1]) if len(parts) == 3 else (None, parts[0])


def test_published_ports_are_loopback_only_and_unique() -> None:
    seen: dict[str, str] = {}
    for name, svc in services().items():
        assert svc.get("network_mode") != "host", f"{name}: network_mode host bypasses the loopback binding"
        for port in svc.get("ports", []):
            host_ip, published = _published(port)
            assert host_ip == LOOPBACK, f"{name}: port {port!r} is not published on {LOOPBACK} only"
            assert published not in seen, f"{name} and {seen.get(published)} both publish {published}"
            seen[published] = name
    assert _published("8000:8000")[0] != LOOPBACK  # what the rule refuses
    assert {"8000", "5000", "8080"} <= set(seen)


def test_long_running_services_have_healthchecks_and_dependencies_make_sense() -> None:
    svcs = services()
    for name, svc in svcs.items():
        one_shot = str(svc.get("restart", "no")) == "no"
        if not one_shot:
            test = (svc.get("healthcheck") or {}).get("test")
            assert test and not (svc.get("healthcheck") or {}).get("disable"), f"{name} has no healthcheck"
        for target, how in (svc.get("depends_on") or {}).items():
            assert target in svcs, f"{name} depends on unknown service {target}"
            condition = how.get("condition") if isinstance(how, dict) else "service_started"
            if condition == "service_healthy":
                assert "healthcheck" in svcs[target], (
                    f"{name} waits for {target} to be healthy: no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert str(svcs[target].get("restart", "no")) == "no", f"{target} is not a one-shot"


def test_volumes_are_named_and_bind_mounts_exist() -> None:
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared under volumes:"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {sorted(declared - used)}"
    state = {v.split(":")[1] for v in services()["ray-head"]["volumes"]}
    assert {"/app/runtime", "/app/data"} <= state


# ------------------------------------------------------------------------ compose: images and builds


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def dockerignored(path: str) -> bool:
    """Whether ``path`` (relative to the context) is left out of the build context (last match wins)."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pat) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    out = []
    for line in logical:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def builds() -> dict[str, tuple[Path, Path]]:
    out = {}
    for name, svc in services().items():
        build = svc.get("build")
        if build is None:
            continue
        assert isinstance(build, dict) and "dockerfile_inline" not in build, f"{name}: inline Dockerfile"
        context = ROOT / build.get("context", ".")
        out[name] = (context, context / build.get("dockerfile", "Dockerfile"))
    return out


def test_each_build_has_its_dockerfile_and_its_inputs() -> None:
    found = builds()
    assert {"ray-head", "mlflow", "label-studio"} <= set(found)
    for name, (context, dockerfile) in found.items():
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile.relative_to(ROOT)} missing"
        instructions = dockerfile_instructions(dockerfile)
        assert any(word == "FROM" for word, _ in instructions), f"{dockerfile.name}: no FROM"
        project_files = []
        for word, args in instructions:
            if word in ("COPY", "ADD"):
                tokens = [t for t in shlex.split(args) if not t.startswith("--")]
                if any(t.startswith("--from") for t in shlex.split(args)):
                    continue
                for source in tokens[:-1]:
                    assert (context / source).exists(), f"{dockerfile.name}: COPY source {source} missing"
                    assert source == "." or not dockerignored(source), f"{source} is in .dockerignore"
                    project_files.append(source)
            if word == "RUN":
                for script in re.findall(r"(scripts/[\w./-]+\.sh|requirements/[\w.-]+\.txt)", args):
                    assert (context / script).is_file(), f"{dockerfile.name}: {script} missing"
                    assert not dockerignored(script), f"{script} is in .dockerignore"
                    project_files.append(script)
        installs = [f for f in project_files if f.startswith(("requirements/", "scripts/setup")) or f == "."]
        assert installs, f"{dockerfile.name} installs nothing of the project's own files"


def test_the_serve_image_carries_what_serving_needs() -> None:
    """The build context (``COPY . .``) keeps the code, configs and release models, and leaves out
    secrets, environments and state."""
    needed = [
        "pyproject.toml",
        "params.yaml",
        "scripts/setup.sh",
        "scripts/setup_teacher.sh",
        "requirements/teacher.txt",
        "serving/serve_config.yaml",
        "docker/ray-head.sh",
        "docker/start_serve.py",
        *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "models" / "release").glob("*.onnx"))),
    ]
    assert len(needed) > 8, "no release ONNX model in models/release"
    for path in needed:
        assert (ROOT / path).exists(), f"{path} missing"
        assert not dockerignored(path), f"{path} is left out of the image by .dockerignore"
    for path in (".env", ".git", ".venv", "runtime/predictions.db", "data/reviewed", "models/teacher/x.onnx"):
        assert dockerignored(path), f"{path} would go into the image"
    script = (ROOT / "docker/serve.Dockerfile").read_text()
    assert "scripts/setup.sh" in script and '".[deploy]"' in script
    assert "deploy" in pyproject()["project"]["optional-dependencies"]


def test_pinned_versions_agree_with_the_project() -> None:
    project = pyproject()["project"]
    mlflow = pinned(project["dependencies"], "mlflow")
    mlflow_txt = (ROOT / "requirements" / "mlflow.txt").read_text().splitlines()
    assert pinned([line for line in mlflow_txt if not line.startswith("#")], "mlflow") == mlflow
    assert services()["mlflow"]["image"].endswith(f":{mlflow}")
    setup_ls = (ROOT / "scripts" / "setup_label_studio.sh").read_text()
    label_studio = re.search(r"LABEL_STUDIO_VERSION=\$\{LABEL_STUDIO_VERSION:-([^}]+)\}", setup_ls)[1]
    assert services()["label-studio"]["image"].endswith(f":{label_studio}")
    serve_tag = services()["ray-head"]["image"]
    assert serve_tag.endswith(f":{project['version']}")
    ray = pinned(project["dependencies"], "ray")
    for manifest in RAY_MANIFESTS:
        cluster = _cluster_spec(kuberay_manifest(manifest))
        assert cluster["rayVersion"] == ray, f"{manifest}: rayVersion is not the project's ray {ray}"
        for template in _pod_templates(kuberay_manifest(manifest)):
            for container in template["spec"].get("containers", []) + template["spec"].get(
                "initContainers", []
            ):
                assert container["image"] == serve_tag, f"{manifest}: {container['name']} runs another image"


def test_ray_settings_match_the_one_machine_runner() -> None:
    from flywheel.ray_runtime import INLINE_CALL_BYTES
    from serving.control import ray_env

    wanted = {k: v for k, v in ray_env(True).items() if k not in LOOPBACK_ONLY_RAY_ENV}
    wanted["RAY_SERVE_DEFAULT_HTTP_HOST"] = "0.0.0.0"  # a container is reached through its interface
    configmap = kuberay_docs("flywheel-config.yaml")[0]["data"]
    for label, env in (("ray-head", environment(services()["ray-head"])), ("ConfigMap", configmap)):
        for key, value in wanted.items():
            assert env.get(key) == value, f"{label}: {key}={env.get(key)!r}, serving.control says {value!r}"
    head_script = (ROOT / "docker" / "ray-head.sh").read_text()
    system_config = json.loads(re.search(r"--system-config='([^']+)'", head_script)[1])
    assert system_config == {"max_direct_call_object_size": INLINE_CALL_BYTES}
    params = kuberay_manifest("rayservice.yaml")["spec"]["rayClusterConfig"]["headGroupSpec"][
        "rayStartParams"
    ]
    assert json.loads(params["system-config"]) == system_config
    assert "serving.runner" in head_script and "start_serve.py" in head_script
    pseudo = services()["pseudo-label"]["command"]
    assert pseudo[:3] == ["ray", "job", "submit"] and "--address=http://ray-head:8265" in pseudo
    assert pseudo[pseudo.index("--") + 1 : pseudo.index("--") + 3] == ["flywheel", "pseudo-label"]
    assert "--dashboard-port=8265" in head_script


def test_dvc_remote_is_the_minio_bucket() -> None:
    text = (ROOT / ".dvc" / "config").read_text()
    remote = re.search(r"\['remote \"minio\"'\]\n((?:\s+.*\n?)+)", text)
    assert remote, ".dvc/config has no remote `minio`"
    options = dict(re.findall(r"^\s+(\w+) = (\S+)", remote[1], re.MULTILINE))
    bucket = INTERPOLATION.fullmatch(environment(services()["minio-init"])["DVC_BUCKET"])["arg"]
    assert options["url"] == f"s3://{bucket}"
    assert "local/$${DVC_BUCKET}" in services()["minio-init"]["entrypoint"]
    port = options["endpointurl"].rsplit(":", 1)[1]
    assert f"{LOOPBACK}:{port}:9000" in services()["minio"]["ports"]


def test_secret_files_are_git_ignored() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (".env", "deploy/kuberay/secrets.env"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert result.returncode == 0, f"{path} is not git-ignored"
    result = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT, check=False)
    assert result.returncode == 1, ".env.example must not be ignored"


# ----------------------------------------------------------------------------------------- KubeRay


def kuberay_validator(kind: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMAS / "kuberay-v1-subset.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls({**schema, "$ref": f"#/$defs/{kind}"})


def _cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    return spec["rayClusterConfig"] if manifest["kind"] == "RayService" else spec["rayClusterSpec"]


def _pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = _cluster_spec(manifest)
    templates = [cluster["headGroupSpec"]["template"]]
    templates += [group["template"] for group in cluster.get("workerGroupSpecs", [])]
    if "submitterPodTemplate" in manifest["spec"]:
        templates.append(manifest["spec"]["submitterPodTemplate"])
    return templates


@pytest.mark.parametrize("name", RAY_MANIFESTS)
def test_kuberay_manifest_is_valid(name: str) -> None:
    manifest = kuberay_manifest(name)
    assert manifest["apiVersion"] == "ray.io/v1"
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in kuberay_validator(manifest["kind"]).iter_errors(manifest)
    ]
    assert not errors, "\n".join(errors)


def test_the_kuberay_validator_refuses_broken_manifests() -> None:
    service = kuberay_manifest("rayservice.yaml")
    validator = kuberay_validator("RayService")
    for breakage in (
        lambda m: m["spec"]["rayClusterConfig"].pop("headGroupSpec"),
        lambda m: m["spec"].pop("serveConfigV2"),
        lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
        lambda m: m["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        lambda m: m["spec"].update({"serveConfig": "x"}),  # misspelt
        lambda m: m.update({"apiVersion": "ray.io/v1alpha1"}),
    ):
        broken = copy.deepcopy(service)
        breakage(broken)
        assert not validator.is_valid(broken)
    job = kuberay_manifest("rayjob-pseudo-label.yaml")
    broken = copy.deepcopy(job)
    broken["spec"].pop("entrypoint")
    assert not kuberay_validator("RayJob").is_valid(broken)
    broken = copy.deepcopy(job)
    broken["spec"].pop("rayClusterSpec")
    assert not kuberay_validator("RayJob").is_valid(broken)


def validate_k8s(obj: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, "1.33", strict=True)


def test_pod_templates_and_core_objects_are_valid_kubernetes() -> None:
    import kubernetes_validate

    count = 0
    for name in RAY_MANIFESTS:
        for template in _pod_templates(kuberay_manifest(name)):
            validate_k8s(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            )
            count += 1
    assert count >= 5
    for doc in kuberay_docs("flywheel-config.yaml"):
        validate_k8s(doc)
    bad = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
    bad["template"] = {"spec": {"containers": [{"name": "c", "image": "i", "envFrm": []}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(bad)


def test_ray_pods_get_the_settings_and_their_volumes_exist() -> None:
    docs = kuberay_docs("flywheel-config.yaml")
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for name in RAY_MANIFESTS:
        for template in _pod_templates(kuberay_manifest(name)):
            spec = template["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for volume in volumes.values():
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
            for container in spec["containers"] + spec.get("initContainers", []):
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, (
                        f"{name}: {container['name']} mounts unknown {mount['name']}"
                    )
            for container in spec["containers"]:
                refs = {next(iter(ref.values()))["name"] for ref in container.get("envFrom", [])}
                assert "flywheel-config" in refs, f"{name}: {container['name']} lacks the ConfigMap"
                if container["name"] == "ray-head":
                    assert "flywheel-secrets" in refs, f"{name}: the head lacks the Secret"
                    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                    assert "/app/logs" in mounts  # FLYWHEEL_LOG_DIR of the ConfigMap


def test_configmap_and_secret_cover_every_variable_the_code_reads() -> None:
    configmap = kuberay_docs("flywheel-config.yaml")[0]
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "flywheel-config"
    data = configmap["data"]
    secret_keys = set(env_file_entries(KUBERAY / "secrets.env.example"))
    missing = sorted(deployment_env_vars() - set(data) - secret_keys)
    assert not missing, f"neither the ConfigMap nor the Secret has {missing}"
    leaked = sorted(k for k in data if SECRET_NAME.search(k) or k == "FLYWHEEL_DATABASE_URL")
    assert not leaked, f"secrets in the ConfigMap: {leaked}"
    both = sorted(set(data) & secret_keys)
    assert not both, f"in both the ConfigMap and the Secret: {both}"
    fields = settings_fields()
    for key, value in data.items():
        if key in fields and _tunable(fields[key].default):
            default = fields[key].default
            assert _same_value(value, default), f"ConfigMap {key}={value!r}, the code says {default!r}"


def _tunable(default: Any) -> bool:
    """A default a deployment keeps: a number, a boolean or a plain string (not a path, host or URL)."""
    if isinstance(default, bool | int | float):
        return True
    return isinstance(default, str) and "127.0.0.1" not in default and "/" not in default


def test_rayservice_serves_the_same_applications_and_arms_as_serve_config() -> None:
    manifest = kuberay_manifest("rayservice.yaml")
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    local = serve_config()
    assert embedded["applications"] == local["applications"]
    app = embedded["applications"][0]
    assert set(app["args"]["arms"]) == set(arms()) == {"fast-cnn", "distilhubert", "teacher"}
    weights = next(d for d in app["deployments"] if d["name"] == "Ingress")["user_config"]["weights"]
    assert set(weights) == set(arms())
    sync = sync_module()
    differing = {k for k in set(embedded) | set(local) if embedded.get(k) != local.get(k)}
    assert differing == set(sync.CLUSTER_OVERRIDES), f"cluster config differs in {sorted(differing)}"
    assert embedded["http_options"]["host"] == "0.0.0.0"
    assert {k: v for k, v in embedded["http_options"].items() if k != "host"} == {
        k: v for k, v in local["http_options"].items() if k != "host"
    }
    text = (KUBERAY / "rayservice.yaml").read_text()
    assert sync.synced(text, local) == text, "run python deploy/kuberay/sync_serve_config.py"
    changed = copy.deepcopy(local)
    changed["applications"][0]["args"]["arms"]["teacher"]["threads"] = 2
    assert sync.synced(text, changed) != text  # the generator does see a change


def _entrypoint_commands(entrypoint: str) -> list[list[str]]:
    return [shlex.split(part) for part in re.split(r"&&|;", entrypoint) if part.strip()]


def _cli_commands() -> set[str]:
    import typer

    from cli.main import app

    return set(typer.main.get_command(app).commands)


@pytest.mark.parametrize(
    ("manifest", "command"),
    [
        ("rayjob-pseudo-label.yaml", ["flywheel", "pseudo-label"]),
        ("rayjob-retrain.yaml", ["flywheel", "retrain"]),
    ],
)
def test_rayjob_runs_the_flywheel_command(manifest: str, command: list[str]) -> None:
    job = kuberay_manifest(manifest)
    first = _entrypoint_commands(job["spec"]["entrypoint"])[0]
    assert first[: len(command)] == command, f"{manifest}: entrypoint starts with {first}"
    assert job["spec"].get("shutdownAfterJobFinishes") is True
    commands = _cli_commands()
    if command[1] not in commands and command[1] == "retrain":
        pytest.skip("`flywheel retrain` is not mounted in cli/main.py yet")
    assert command[1] in commands, f"`flywheel {command[1]}` is not a command of cli.main"
