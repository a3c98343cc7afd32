"""Tune a system's clustering threshold on a dev set: lowest total DER wins.

A dev set is a folder of ``<uri>.wav`` + ``<uri>.rttm`` (+ optional ``<uri>.uem``). Each file is
processed once up to the embeddings when the system supports it (``prepare`` / ``cluster``, see
:class:`flywheel.systems.ReclusterableSystem`); only the clustering is redone per threshold.

    python -m experiments.tune --system baseline --dev-set data/dev --write-params
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from flywheel.testset import iter_test_set
from flywheel.threshold_scan import score_thresholds

DEFAULT_GRID = "0.1:1.0:0.02"  # cosine-distance thresholds


def parse_thresholds(spec: str) -> list[float]:
    """``"0.1,0.2,0.3"`` or ``"start:stop:step"`` (stop included) -> sorted thresholds."""
    spec = spec.strip()
    if ":" in spec:
        start, stop, step = (float(v) for v in spec.split(":"))
        if step <= 0 or stop < start:
            raise ValueError(f"bad threshold range {spec!r}: need start <= stop and step > 0")
        values = np.arange(start, stop + step / 2, step)
    else:
        values = np.array([float(v) for v in spec.split(",") if v.strip()])
    if values.size == 0:
        raise ValueError(f"no thresholds in {spec!r}")
    return sorted({round(float(v), 6) for v in values})


def dev_folders(dev: str | Path | Sequence[str | Path]) -> list[Path]:
    """One dev folder or several -> the list of folders."""
    return [Path(dev)] if isinstance(dev, (str, Path)) else [Path(d) for d in dev]


def tune_threshold(
    system_name: str,
    dev_dir: str | Path | Sequence[str | Path],
    thresholds: list[float],
    collar: float = 0.0,
    system_options: dict[str, Any] | None = None,
) -> tuple[float, list[dict[str, float]]]:
    """Diarize a dev set (or several, scored as one) at every threshold; return the best threshold and
    one table row per threshold.

    Rows as in :func:`score_thresholds`. Ties on DER go to the middle of the tied thresholds.
    """
    from flywheel.systems import get_system

    options = dict(system_options or {})
    system = get_system(system_name, **options)
    table = score_thresholds(
        system,
        [item for folder in dev_folders(dev_dir) for item in iter_test_set(folder)],
        thresholds,
        collar,
        rebuild=lambda t: get_system(system_name, **{**options, "threshold": t}),
    )
    best_der = min(row["der"] for row in table)
    tied = [row["threshold"] for row in table if row["der"] <= best_der + 1e-9]
    return tied[len(tied) // 2], table


def write_threshold(params_file: str | Path, system_name: str, threshold: float) -> None:
    """Set ``systems.<system_name>.threshold`` in a YAML file by replacing that one line.

    Comments and the rest of the file are kept as they are.

    Raises:
        KeyError: the file has no ``systems: <system_name>: threshold:`` entry to replace.
    """
    write_yaml_value(params_file, ["systems", system_name, "threshold"], threshold)


def write_yaml_value(params_file: str | Path, keys: list[str], value: float) -> None:
    """Set the number at ``keys`` (e.g. ``["systems", "baseline", "threshold"]``) in a YAML file by
    replacing that one line; comments and the rest of the file are kept as they are.

    Raises:
        KeyError: the file has no such entry to replace.
    """
    path = Path(params_file)
    lines = path.read_text().splitlines(keepends=True)
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    key_re = re.compile(r"^(\s*)([A-Za-z0-9_.\-]+)\s*:(.*)$")
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if [k for _, k in stack] + [key] == keys:
            comment = re.search(r"\s+#.*$", rest.rstrip("\n"))
            tail = comment.group(0) if comment else ""
            lines[i] = f"{m.group(1)}{key}: {value:g}{tail}\n"
            path.write_text("".join(lines))
            return
        stack.append((indent, key))
    raise KeyError(f"{path} has no {'.'.join(keys)} entry")


# `--params-file` of the tuners that write their result into params.yaml
ParamsFileOption = Annotated[
    Path | None,
    typer.Option("--params-file", help="YAML file to update (default: the project's params.yaml)."),
]

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command()
def main(
    dev_set: Annotated[
        list[Path],
        typer.Option(
            "--dev-set",
            "-d",
            help="Folder of <uri>.wav + <uri>.rttm (+ <uri>.uem) files; repeat it to tune on several as one.",
            exists=True,
            file_okay=False,
        ),
    ],
    system: Annotated[str, typer.Option("--system", "-s", help="Diarization system to tune.")] = "baseline",
    thresholds: Annotated[
        str, typer.Option("--thresholds", "-t", help="Comma list or start:stop:step (stop included).")
    ] = DEFAULT_GRID,
    collar: Annotated[float, typer.Option("--collar", help="DER collar in seconds (0 = strict).")] = 0.0,
    write_params: Annotated[
        bool,
        typer.Option(
            "--write-params/--no-write-params",
            help="Write the best threshold into params.yaml: systems.<system>.threshold.",
        ),
    ] = False,
    params_file: ParamsFileOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the DER table as JSON here.")
    ] = None,
    model_path: Annotated[
        Path | None,
        typer.Option("--model-path", help="ONNX model for neural systems (default: release model)."),
    ] = None,
    step: Annotated[
        float | None,
        typer.Option("--step", help="Chunk step in seconds for neural systems (default: params.yaml)."),
    ] = None,
) -> None:
    """Pick the clustering threshold with the lowest total DER on a dev set."""
    grid = parse_thresholds(thresholds)
    options = {k: v for k, v in {"model_path": model_path, "step_s": step}.items() if v is not None} or None
    dev_sets = dev_folders(dev_set)
    best, table = tune_threshold(system, dev_sets, grid, collar=collar, system_options=options)
    typer.echo(f"{'threshold':>9}  {'DER':>6}  {'miss':>6}  {'FA':>6}  {'conf':>6}")
    for row in table:
        mark = "  <- best" if row["threshold"] == best else ""
        typer.echo(
            f"{row['threshold']:9.3f}  {row['der']:6.3f}  {row['missed']:6.1f}  "
            f"{row['false_alarm']:6.1f}  {row['confusion']:6.1f}{mark}"
        )
    result = {
        "system": system,
        "dev_sets": [str(d) for d in dev_sets],
        "collar": collar,
        "best_threshold": best,
        "table": table,
    }
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
    if write_params:
        from flywheel.config import get_settings

        target = params_file or get_settings().params_file
        write_threshold(target, system, best)
        typer.echo(f"wrote systems.{system}.threshold = {best:g} to {target}")
    typer.echo(json.dumps({"best_threshold": best, "der": min(r["der"] for r in table)}))


if __name__ == "__main__":
    app()
