"""The packages import inward only: the data path's layers, checked on every module's imports.

``flywheel`` is the core and imports none of the others; each package may import only the layers
below it (lazy imports inside functions count too). A new arrow must be added here on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "flywheel": set(),
    "registry": {"flywheel"},
    "labeling": {"flywheel"},
    "pipelines": {"flywheel", "labeling"},
    "training": {"flywheel", "labeling", "pipelines", "registry"},
    "experiments": {"flywheel", "labeling", "pipelines", "registry", "training"},
    "serving": {"flywheel", "registry"},
    "benchmarks": {"flywheel", "labeling", "pipelines", "registry", "training", "experiments", "serving"},
}
PACKAGES = {*ALLOWED, "cli"}


def imported_packages(path: Path) -> dict[str, int]:
    """Project packages ``path`` imports (absolute imports, module level or inside functions) -> a line."""
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                out.setdefault(top, node.lineno)
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for top, line in imported_packages(path).items():
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os\n\ndef f():\n    from serving.control import start_ray\n    import training.train\n"
    )
    assert imported_packages(module) == {"serving": 4, "training": 5}
