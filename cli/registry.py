"""Registry commands: ``mlflow`` (the server), ``register``, ``promote`` (the gate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


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
    from registry.mlflow_server import (
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
    from registry.models import bootstrap_registry

    try:
        versions = bootstrap_registry(cfg.url)
    except Exception as err:
        typer.secho(f"registry bootstrap failed: {err}", fg="red", err=True)
        return
    for name, version in versions.items():
        typer.echo(f"registry: {name} " + (f"version {version}" if version else "(no release model yet)"))


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
    from registry.gate_rules import GateRules
    from registry.mlflow_utils import dataset_version, git_commit
    from registry.models import RegistryUnavailable, client_for
    from registry.models import register as run_register
    from registry.promote import registration_metrics

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


def promote(
    model: str = typer.Option(..., "--model", "-m", help="Registered model: fast-cnn or distilhubert."),
    version: str = typer.Option(..., "--version", "-v", help="Model version number."),
    reevaluate: bool = typer.Option(
        False, "--reevaluate", help="Evaluate again instead of reusing the local gate evaluation cache."
    ),
) -> None:
    """The gate: evaluates the version and the champion on the gate set, writes its signed record,
    moves champion / challenger (a hand-set alias goes back to the last good version)."""
    from registry.gate_rules import GateRules
    from registry.models import RegistryUnavailable
    from registry.promote import promote as run_promote

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
