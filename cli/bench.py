"""``flywheel bench ...``: the benchmark scripts of ``benchmarks/`` as subcommands.

Each benchmark keeps its own typer options (``flywheel bench <name> --help`` shows them); its module
is imported only when it runs, so ``flywheel --help`` stays instant. ``python benchmarks/<name>.py``
works as before.
"""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(
    help="Benchmarks: accuracy, speed, load, reliability (reports/benchmarks/).", no_args_is_help=True
)

BENCHMARKS: dict[str, str] = {
    "diarization": "Latency, DER on every set, RTF and peak memory of each system, side by side.",
    "compare-models": "Is model B really better than model A? Per-file DER, paired bootstrap.",
    "load": "Load test of the serving path on loopback: throughput and latency per arm.",
    "chunk-batching": "Would batching across requests pay? Model cost per chunk by batch size.",
    "reliability": "Faults injected into the served endpoint under load, and a soak.",
    "oracle-clustering": "A neural system's DER with its clustering vs oracle clustering.",
    "embedding-quality": "How good a neural system's local speakers are before clustering.",
    "speaker-counts": "Clustering on recordings with fewer or more speakers than dev.",
}
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def run_benchmark(name: str, args: list[str]) -> None:
    """Run ``benchmarks/<name>.py``'s ``main`` with command-line ``args`` (exits like the script)."""
    module = importlib.import_module(f"benchmarks.{name.replace('-', '_')}")
    single = typer.Typer(add_completion=False)
    single.command()(module.main)
    typer.main.get_command(single).main(args=args, prog_name=f"flywheel bench {name}")


def _mount(name: str, help_text: str) -> None:
    def command(ctx: typer.Context) -> None:
        run_benchmark(name, list(ctx.args))

    command.__doc__ = help_text
    bench_app.command(name, context_settings=PASS_THROUGH, help=help_text)(command)


for _name, _help in BENCHMARKS.items():
    _mount(_name, _help)
