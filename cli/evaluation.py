"""Inference and evaluation commands: ``diarize``, ``evaluate``, ``tune``, ``systems``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.options import TRACK
from flywheel.config import REPO_ROOT


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
    from experiments.eval_tracking import log_evaluation
    from experiments.evaluate import evaluate_system, print_report
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


def systems() -> None:
    """List the diarization systems that can be used with --system."""
    from flywheel.systems import available_systems

    typer.echo(json.dumps(available_systems()))
