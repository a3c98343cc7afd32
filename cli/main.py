"""``flywheel``: the one command-line entry point (typer; ``--help`` on every command).

A thin package on top: it mounts each package's commands and owns none of their logic, so the core
(``flywheel/``) never imports serving, training or the registry. Imports inside each command are lazy,
so ``flywheel --help`` is instant and the serving path never pulls in training dependencies.
"""

from __future__ import annotations

import typer

from cli import evaluation, models, registry
from cli.bench import bench_app
from cli.data import data_app
from experiments.ab_report import report_command as ab_report_command
from labeling.cli import label_app
from labeling.cli import pseudo_label as pseudo_label_command
from serving.cli import ab_app, audio_app, db_app, serve_app
from training.retrain_cli import retrain_app

app = typer.Typer(
    help="Speaker diarization that gets better from its own traffic: data, training, evaluation, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# audio -> features -> model -> segments: data, inference and evaluation
app.add_typer(data_app, name="data")
app.command()(evaluation.diarize)
app.command()(evaluation.evaluate)
app.command()(evaluation.tune)
app.command()(evaluation.systems)
# train -> evaluate -> register -> promote
app.command()(models.train)
app.command()(models.distill)
app.command("export-onnx")(models.export_onnx)
app.command("average-checkpoints")(models.average_checkpoints)
app.add_typer(bench_app, name="bench")
app.command("mlflow")(registry.mlflow_server)
app.command()(registry.register)
app.command()(registry.promote)
# serve -> log -> pseudo-label -> review -> dataset -> retrain
app.add_typer(serve_app, name="serve")
app.add_typer(ab_app, name="ab")
ab_app.command("report")(ab_report_command)
app.add_typer(db_app, name="db")
app.add_typer(audio_app, name="audio")
app.command("pseudo-label")(pseudo_label_command)
app.add_typer(label_app, name="label")
app.add_typer(retrain_app, name="retrain")


if __name__ == "__main__":
    app()
