"""``flywheel``: the one command-line entry point (typer; ``--help`` on every command).

Imports are lazy inside each command so ``flywheel --help`` is instant and the serving path never
pulls in training dependencies.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import typer

from flywheel.config import REPO_ROOT

app = typer.Typer(
    help="Speaker diarization that gets better from its own traffic: data, training, evaluation, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(
    help="Build the speech data: inventory, simulated conversations, ami-debug.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

# Serving side (serving/cli.py): A/B weights, prediction database, Serve runner, audio store.
from serving.cli import ab_app, audio_app, db_app, serve_app  # noqa: E402

app.add_typer(ab_app, name="ab")
app.add_typer(db_app, name="db")
app.add_typer(serve_app, name="serve")
app.add_typer(audio_app, name="audio")

# Label Studio review queue (labeling/cli.py): serve, push, pull.
from labeling.cli import label_app  # noqa: E402

app.add_typer(label_app, name="label")

# The flywheel's review side: `flywheel pseudo-label` (= `flywheel label pseudo-label`, labeling/cli.py)
# and `flywheel ab report` (experiments/ab_report.py); both import their work lazily.
from experiments.ab_report import report_command as ab_report_command  # noqa: E402
from labeling.cli import pseudo_label as pseudo_label_command  # noqa: E402

app.command("pseudo-label")(pseudo_label_command)
ab_app.command("report")(ab_report_command)

# The retrain loop (training/retrain_cli.py): `flywheel retrain [--force]`, and its DVC stages.
from training.retrain_cli import retrain_app  # noqa: E402

app.add_typer(retrain_app, name="retrain")

PROFILE = typer.Option("smoke", "--profile", "-p", help="Data profile from params.yaml: smoke or full.")
TRACK = typer.Option(
    True, "--track/--no-track", help="Log the run to MLflow (skipped with a message when it is down)."
)


def _data_dir() -> Path:
    from flywheel.config import get_settings

    return get_settings().data_dir


@data_app.command("install-packages")
def data_install_packages() -> None:
    """Install the Debian packages the data pipeline needs (TTS voices, sox, real recordings)."""
    raise typer.Exit(subprocess.call(["bash", str(REPO_ROOT / "pipelines" / "install_packages.sh")]))


@data_app.command("inventory")
def data_inventory(
    profile: str = PROFILE,
    out_dir: Path = typer.Option(None, help="Output directory (default: data/inventory/<profile>)."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
) -> None:
    """Build the speaker inventory (utterances, tight speech intervals, speaker split)."""
    from pipelines.build_inventory import build_inventory

    build_inventory(profile, out_dir or _data_dir() / "inventory" / profile, workers=workers)


@data_app.command("conversations")
def data_conversations(
    profile: str = PROFILE,
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/<profile>)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/conversations/<profile>)."),
) -> None:
    """Simulate the fixed dev/test conversations (exact RTTM/UEM) of a profile."""
    from pipelines.build_conversations import main

    main(
        profile=profile,
        inventory_dir=inventory_dir or _data_dir() / "inventory" / profile,
        out_dir=out_dir or _data_dir() / "conversations" / profile,
    )


@data_app.command("ami")
def data_ami(
    out_dir: Path = typer.Option(None, help="Output directory (default: data/ami-debug)."),
) -> None:
    """Prepare the real ami-debug meetings as train/development/test evaluation folders."""
    from pipelines.ami import main

    main(source=None, out_dir=out_dir or _data_dir() / "ami-debug")


@data_app.command("real")
def data_real(
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/full)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/real)."),
) -> None:
    """Build dev-real, confirm-real and test-real: real voices only, held-out speakers, another acoustic
    recipe than training (the sets every decision is made on)."""
    from pipelines.build_real_sets import main

    main(
        inventory_dir=inventory_dir or _data_dir() / "inventory" / "full",
        out_dir=out_dir or _data_dir() / "real",
    )


@data_app.command("teacher")
def data_teacher(
    profile: str = PROFILE,
    inventory_dir: Path = typer.Option(None, help="Inventory directory (default: data/inventory/<profile>)."),
    out: Path = typer.Option(None, help="Output file (default: data/teacher/<profile>.npz)."),
    max_utterances: int = typer.Option(8, help="Utterances averaged per speaker."),
) -> None:
    """Resemblyzer d-vector of every training speaker: the target of embedding distillation."""
    from pipelines.inventory import Inventory
    from training.teacher import compute_teacher_vectors, save_teacher_vectors

    inventory = Inventory.load(inventory_dir or _data_dir() / "inventory" / profile)
    speakers, vectors = compute_teacher_vectors(inventory, max_utterances=max_utterances)
    target = out or _data_dir() / "teacher" / f"{profile}.npz"
    save_teacher_vectors(target, speakers, vectors)
    typer.echo(f"{len(speakers)} teacher vectors -> {target}")


@data_app.command("distill-pool")
def data_distill_pool(
    profile: str = PROFILE,
    shard: list[int] = typer.Option(None, help="Build only these shards (default: every missing one)."),
    out_dir: Path = typer.Option(None, help="Output directory (default: data/distill/<profile>)."),
) -> None:
    """Teacher-labelled training chunks (segmentation-3.0 posteriors + CAM++ embeddings) for distillation."""
    from flywheel.config import load_params
    from training.distill_pool import build_pool

    for info in build_pool(profile, load_params(), _data_dir(), shards=shard or None, out_dir=out_dir):
        typer.echo(f"{info['chunks']} chunks ({info['hours']:.2f} h), {info['embedded_slots']} CAM++ targets")


@data_app.command("build")
def data_build(profile: str = PROFILE) -> None:
    """Everything for a profile: inventory, conversations and ami-debug (what `dvc repro` runs)."""
    data_inventory(profile=profile, out_dir=None, workers=2)
    data_conversations(profile=profile, inventory_dir=None, out_dir=None)
    data_ami(out_dir=None)


@app.command()
def diarize(
    audio: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG; any rate and channels)."),
    system: str = typer.Option(
        "baseline", "--system", "-s", help="Diarization system (see `flywheel systems`)."
    ),
    out_dir: Path = typer.Option(
        Path("diarization"), "--out-dir", "-o", help="Writes <out-dir>/<stem>.rttm."
    ),
    num_speakers: int = typer.Option(
        None, "--num-speakers", "-n", min=1, help="Number of speakers, when known (default: estimated)."
    ),
) -> None:
    """Diarize audio files: who spoke when, as one RTTM per input."""
    from tqdm import tqdm

    from flywheel.audio import AudioError, load_audio
    from flywheel.segments import write_rttm
    from flywheel.systems import get_system

    diarizer = get_system(system)
    failed = 0
    for path in tqdm(audio, desc=f"diarize ({system})", unit="file", disable=len(audio) < 2):
        try:
            waveform = load_audio(path)
        except (AudioError, FileNotFoundError) as err:
            typer.secho(f"{path}: {err}", fg="red", err=True)
            failed += 1
            continue
        annotation = diarizer.diarize(waveform, uri=path.stem, num_speakers=num_speakers)
        write_rttm(out_dir / f"{path.stem}.rttm", annotation)
        typer.echo(f"{path} -> {out_dir / (path.stem + '.rttm')}: {len(annotation.labels())} speakers")
    raise typer.Exit(1 if failed else 0)


@app.command()
def evaluate(
    system: str = typer.Option("baseline", "--system", "-s", help="Diarization system to score."),
    test_set: Path = typer.Option(
        ..., "--test-set", "-t", help="Folder of <uri>.wav + <uri>.rttm (+ <uri>.uem)."
    ),
    out_dir: Path = typer.Option(
        None, "--out-dir", "-o", help="Report folder (default: reports/<system>/<set>)."
    ),
    model_path: Path = typer.Option(
        None, "--model-path", help="ONNX file for a neural system (default: params.yaml systems.<name>)."
    ),
    track: bool = TRACK,
) -> None:
    """Score a system: DER (pyannote.metrics, overlap scored) at collars 0 and 0.25, per file and total."""
    from experiments.evaluate import evaluate_system, print_report
    from experiments.tracking import log_evaluation
    from flywheel.systems import get_system

    out_dir = out_dir or REPO_ROOT / "reports" / system / test_set.name
    diarizer = get_system(system, **({"model_path": model_path} if model_path else {}))
    report = evaluate_system(diarizer, test_set, out_dir)
    print_report(report)
    typer.echo(f"report: {out_dir / 'report.json'}  hypotheses: {out_dir / 'rttm'}")
    log_evaluation(
        report,
        out_dir,
        system_name=system,
        test_set=test_set,
        model_path=getattr(diarizer, "model_path", None),
        enabled=track,
    )


@app.command()
def train(
    model: str = typer.Option("fast-cnn", "--model", "-m", help="Model type: fast-cnn or distilhubert."),
    config: str = typer.Option(
        "smoke", "--config", "-c", help="Training recipe from params.yaml (smoke, full)."
    ),
    out_dir: Path = typer.Option(
        None, "--out-dir", "-o", help="Checkpoints (default: checkpoints/<model>/<config>)."
    ),
    resume: bool = typer.Option(True, help="Resume from <out-dir>/last.pt when it exists."),
    track: bool = TRACK,
    init_from: Path = typer.Option(
        None,
        "--init-from",
        help="Start from these weights: a training checkpoint, or for distilhubert a local pretrained "
        "encoder in the ntu-spml/distilhubert layout (directory with config.json + weights). "
        "Nothing is downloaded.",
    ),
) -> None:
    """Train a model on simulated conversations (early stopping on dev DER, resumable checkpoints)."""
    from training.train import train as run_training

    summary = run_training(model, config, out_dir, resume=resume, track=track, init_from=init_from)
    typer.echo(
        f"best dev DER {summary['best_dev_der']:.4f} (threshold {summary['best_threshold']}) "
        f"after {summary['epochs']} epochs -> {summary['checkpoint']}"
    )


@app.command()
def distill(
    model: str = typer.Option("fast-cnn", "--model", "-m", help="Model type: fast-cnn or distilhubert."),
    recipe: str = typer.Option(
        "smoke", "--recipe", "-r", help="Distillation recipe (params.yaml `distill`)."
    ),
    out_dir: Path = typer.Option(
        None, "--out-dir", "-o", help="Checkpoints (default: checkpoints/<model>/<recipe>)."
    ),
    resume: bool = typer.Option(True, help="Resume from <out-dir>/last.pt when it exists."),
) -> None:
    """Distil an arm from the teacher: segmentation-3.0 posteriors + CAM++ embeddings of the
    distillation pool (`flywheel data distill-pool`), checkpoints chosen on real-voice dev DER."""
    from training.distill import distill as run_distill

    summary = run_distill(model, recipe, out_dir, resume=resume)
    typer.echo(
        f"best dev DER {summary['best_dev_der']:.4f} on {summary['dev_set']} (threshold "
        f"{summary['best_threshold']}) after {summary['epochs']} epochs -> {summary['checkpoint']}"
    )


@app.command("export-onnx")
def export_onnx(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Training checkpoint (best.pt)."),
    model_type: str = typer.Option("fast-cnn", "--model-type", help="fast-cnn or distilhubert (checked)."),
    out: Path = typer.Option(None, "--out", help="ONNX file (default: models/<model-type>.onnx)."),
    optimization_level: str = typer.Option(
        "extended",
        "--optimization-level",
        help="onnxruntime graph optimisation: disabled, basic, extended, all.",
    ),
    quantize: str = typer.Option(
        None,
        "--quantize",
        help="int8: dynamic int8 MatMul/Gemm (fast-cnn) or static int8 Conv/MatMul calibrated on dev "
        "conversations (distilhubert); int8-static: static int8 for any model (the fast-cnn release).",
    ),
    tolerance: float = typer.Option(
        None, help="Max abs difference allowed vs PyTorch (default: 1e-3; int8 0.05; static int8 0.25)."
    ),
) -> None:
    """Export a checkpoint to ONNX with graph optimisation, optional int8, and a parity check."""
    from training.export import ParityError, load_checkpoint
    from training.export import export_onnx as run_export

    _, ckpt = load_checkpoint(checkpoint)
    if ckpt["model_type"] != model_type:
        typer.secho(f"checkpoint holds a {ckpt['model_type']} model, not {model_type}", fg="red", err=True)
        raise typer.Exit(2)
    out = out or REPO_ROOT / "models" / f"{model_type}{'-int8' if quantize else ''}.onnx"
    try:
        report = run_export(checkpoint, out, optimization_level, quantize, tolerance)
    except ParityError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"parity max abs diff {report['max_abs_diff']:.3g} (tolerance {report['tolerance']:g})")
    typer.echo(f"wrote {report['onnx']} ({report['bytes'] / 1e6:.1f} MB)")


@app.command("average-checkpoints")
def average_checkpoints(
    checkpoints: list[Path] = typer.Argument(
        ...,
        help="Two or more best.pt checkpoints of one architecture (a Fast CNN with fewer blocks than the "
        "first is grown to its depth).",
        exists=True,
        dir_okay=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the averaged checkpoint."),
) -> None:
    """Average the weights of checkpoints (a model soup); export it like any best.pt."""
    from training.train import average_checkpoints as run_average

    try:
        run_average(checkpoints, out)
    except ValueError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out}: mean weights of {len(checkpoints)} checkpoints")


@app.command()
def tune(
    system: str = typer.Option(
        "fast-cnn", "--system", "-s", help="System whose clustering threshold is tuned."
    ),
    dev_set: list[Path] = typer.Option(
        ...,
        "--dev-set",
        help="Dev folder of <uri>.wav + .rttm (never test); repeat to tune on several.",
    ),
    thresholds: str = typer.Option("0.1:1.0:0.02", help="Comma list or start:stop:step (stop included)."),
    collar: float = typer.Option(0.0, help="DER collar in seconds."),
    model_path: Path = typer.Option(None, help="ONNX model for neural systems (default: release model)."),
    write_params: bool = typer.Option(False, help="Write the best threshold into params.yaml."),
    output: Path = typer.Option(None, help="Also write the DER table as JSON here."),
    step: float = typer.Option(None, help="Chunk step in seconds for neural systems (default: params.yaml)."),
) -> None:
    """Tune a system's clustering threshold on a dev set (lowest total DER)."""
    from experiments.tune import main as tune_main

    tune_main(
        dev_set=dev_set,
        system=system,
        thresholds=thresholds,
        collar=collar,
        write_params=write_params,
        params_file=None,
        output=output,
        model_path=model_path,
        step=step,
    )


@app.command("mlflow")
def mlflow_server(
    port: int = typer.Option(None, "--port", help="Port (default: 5000, FLYWHEEL_MLFLOW_PORT)."),
    host: str = typer.Option(None, "--host", help="Interface (default: 127.0.0.1; keep it on loopback)."),
    root: Path = typer.Option(None, "--root", help="SQLite DB, artifacts, pid and log [runtime/mlflow]."),
    backend_store_uri: str = typer.Option(
        None, "--backend-store-uri", help="Another backend (postgresql://...) (default: SQLite in --root)."
    ),
    artifacts_destination: str = typer.Option(
        None, "--artifacts-destination", help="Another artifact store (s3://...) (default: <root>/artifacts)."
    ),
    foreground: bool = typer.Option(False, "--foreground", help="Stay attached (Ctrl-C stops the server)."),
    stop: bool = typer.Option(False, "--stop", help="Stop the background server of the pid file."),
    bootstrap: bool = typer.Option(True, help="Register the release models once the server is up."),
    timeout: float = typer.Option(240.0, help="Seconds to wait for /health (first start: about 1 min)."),
) -> None:
    """Start the MLflow tracking server (UI + registry) in the background and wait for /health."""
    from experiments.mlflow_server import (
        ServerConfig,
        ServerError,
        launch,
        start_server,
        stop_server,
        wait_healthy,
    )

    cfg = ServerConfig.from_settings(
        port=port,
        host=host,
        root=root,
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
    )
    if stop:
        stopped = stop_server(cfg)
        typer.echo(f"stopped the MLflow server of {cfg.pid_file}" if stopped else "no MLflow server running")
        return
    if foreground:
        proc = launch(cfg)
        try:
            if not wait_healthy(cfg.url, timeout, proc):
                typer.secho(f"MLflow server did not come up: see {cfg.log_file}", fg="red", err=True)
                raise typer.Exit(1)
            _server_ready(cfg, bootstrap)
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop_server(cfg)
        return
    try:
        pid = start_server(cfg, timeout_s=timeout)
    except ServerError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None
    _server_ready(cfg, bootstrap)
    typer.echo(f"server pid {pid} ({cfg.pid_file}); stop it with `flywheel mlflow --stop`")


def _server_ready(cfg: Any, bootstrap: bool) -> None:
    """Announce the server and register the release models (a bootstrap error is reported, not fatal)."""
    typer.echo(f"MLflow UI and API at {cfg.url} (log {cfg.log_file})")
    if not bootstrap:
        return
    from experiments.registry import bootstrap_registry

    try:
        versions = bootstrap_registry(cfg.url)
    except Exception as err:
        typer.secho(f"registry bootstrap failed: {err}", fg="red", err=True)
        return
    for name, version in versions.items():
        typer.echo(f"registry: {name} " + (f"version {version}" if version else "(no release model yet)"))


@app.command()
def register(
    model: str = typer.Option(..., "--model", "-m", help="Registered model: fast-cnn or distilhubert."),
    onnx: Path = typer.Option(
        ..., "--onnx", exists=True, dir_okay=False, help="Exported ONNX file (flywheel export-onnx)."
    ),
    der_gate: float = typer.Option(
        None, "--der-gate", help="Known DER on the gate set (default: evaluate it now)."
    ),
    gate_set: Path = typer.Option(None, "--gate-set", help="(default: params.yaml promotion.gate_set)"),
    evaluate_now: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="Evaluate on the gate set when --der-gate is not given."
    ),
    promote_now: bool = typer.Option(False, "--promote", help="Run the promotion gate right after."),
) -> None:
    """Register an ONNX model version with its DER, latency, dataset version and git commit."""
    from experiments.gate_rules import GateRules
    from experiments.mlflow_utils import dataset_version, git_commit
    from experiments.promote import registration_metrics
    from experiments.registry import RegistryUnavailable, client_for
    from experiments.registry import register as run_register

    try:
        client_for()  # fail fast, before a gate-set evaluation
    except RegistryUnavailable as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None
    gate = gate_set or GateRules.from_params().gate_set
    metrics = registration_metrics(model, onnx, gate, der_gate=der_gate, evaluate_now=evaluate_now)
    try:
        version = run_register(model, onnx, metrics, dataset_version([gate]), git_commit(), gate_set=gate)
    except RegistryUnavailable as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"registered {model} version {version} (der_gate {metrics.get('der_gate', 'unknown')})")
    if promote_now:
        promote(model=model, version=version, reevaluate=False)


@app.command()
def promote(
    model: str = typer.Option(..., "--model", "-m", help="Registered model: fast-cnn or distilhubert."),
    version: str = typer.Option(..., "--version", "-v", help="Model version number."),
    reevaluate: bool = typer.Option(
        False, "--reevaluate", help="Evaluate again instead of reusing the local gate evaluation cache."
    ),
) -> None:
    """The gate: evaluates the version and the champion on the gate set, writes its signed record,
    moves champion / challenger (a hand-set alias goes back to the last good version)."""
    from experiments.gate_rules import GateRules
    from experiments.promote import promote as run_promote
    from experiments.registry import RegistryUnavailable

    rules = GateRules.from_params()
    typer.echo(rules.describe())
    try:
        decision = run_promote(model, version, rules=rules, reevaluate=reevaluate)
    except RegistryUnavailable as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(1) from None
    color = {"champion": "green", "challenger": "yellow"}.get(decision.action, "red")
    typer.secho(decision.summary(), fg=color)
    raise typer.Exit(1 if decision.refused else 0)


@app.command()
def systems() -> None:
    """List the diarization systems that can be used with --system."""
    from flywheel.systems import available_systems

    typer.echo(json.dumps(available_systems()))


if __name__ == "__main__":
    app()
