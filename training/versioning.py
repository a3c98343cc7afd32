"""DVC and git for the flywheel's dataset versions: run ``dvc``, read ``dvc.lock``, commit it.

A dataset version is the DVC hash of the reviewed set in ``dvc.lock`` plus the git commit that
recorded that ``dvc.lock`` (:func:`commit_lock`); :func:`dataset_commit` finds that commit again
from the hash alone, so any stage (or person) can name the version of the data a model came from.

Every command runs in a workspace ``root`` (a git checkout with ``dvc.yaml``: this repository by
default), with the running interpreter's ``bin/`` first on ``PATH`` (the stages call ``flywheel``)
and ``FLYWHEEL_PARAMS_FILE`` / ``FLYWHEEL_DATA_DIR`` pointing into the workspace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

TAIL_LINES = 40


class CommandError(RuntimeError):
    """A ``dvc`` or ``git`` command failed; the message ends with the tail of its output."""


def workspace_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command run in workspace ``root``."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLYWHEEL_PARAMS_FILE"] = str((root / "params.yaml").resolve())
    env["FLYWHEEL_DATA_DIR"] = str((root / "data").resolve())
    env.update(extra or {})
    return env


def run(
    args: list[str],
    root: Path,
    *,
    echo: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> tuple[int, str]:
    """Run ``args`` in ``root``; returns ``(exit code, output)``. With ``echo`` every output line is
    passed on as it comes (a long ``dvc repro``), else the output is only collected.

    Raises:
        CommandError: a non-zero exit with ``check`` (the message holds the last output lines, or
            with ``echo`` the error line only: the rest was shown).
    """
    proc = subprocess.Popen(
        args,
        cwd=root,
        env=workspace_env(root, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    lines: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    for line in proc.stdout:
        lines.append(line)
        tail.append(line.rstrip())
        if echo is not None:
            echo(line.rstrip("\n"))
    code = proc.wait()
    if check and code != 0:
        # the output was shown as it came: repeat only its error line; else its last lines
        kept = [t for t in tail if t.startswith("ERROR")][-1:] if echo is not None else list(tail)
        shown = "\n".join(t for t in kept if t.strip())
        raise CommandError(
            f"`{' '.join(args[2:] if args[:2] == [sys.executable, '-m'] else args)}` "
            f"failed (exit {code}) in {root}:\n{shown}"
        )
    return code, "".join(lines)


def dvc(root: Path, *args: str, **kwargs: Any) -> tuple[int, str]:
    """``dvc <args>`` of this interpreter's environment, in ``root`` (see :func:`run`)."""
    return run([sys.executable, "-m", "dvc", *args], root, **kwargs)


def git(root: Path, *args: str, **kwargs: Any) -> tuple[int, str]:
    """``git <args>`` in ``root`` (see :func:`run`)."""
    return run(["git", *args], root, **kwargs)


def lock_stages(root: Path) -> dict[str, Any]:
    """The stage entries of ``root/dvc.lock`` (empty when nothing was reproduced yet)."""
    path = root / "dvc.lock"
    if not path.is_file():
        return {}
    return dict((yaml.safe_load(path.read_text()) or {}).get("stages") or {})


def out_hash(root: Path, out: str) -> str | None:
    """The md5 ``dvc.lock`` records for output ``out`` (``.dir`` suffix dropped), if any."""
    for stage in lock_stages(root).values():
        for entry in stage.get("outs") or []:
            if entry.get("path", "").rstrip("/") == out.rstrip("/") and "md5" in entry:
                return str(entry["md5"]).removesuffix(".dir")
    return None


def pipeline_status(root: Path, target: str) -> dict[str, list[Any]]:
    """``dvc status`` of ``target`` and its upstream stages: ``{stage: [changes]}`` for every stage
    that is not up to date (``"changed deps"`` / ``"changed outs"`` entries)."""
    _, out = dvc(root, "status", "--json", "--with-deps", target)
    text = out[out.find("{") :] if "{" in out else "{}"
    return dict(json.loads(text))


def is_git_repo(root: Path) -> bool:
    """``root`` is inside a git work tree."""
    code, out = git(root, "rev-parse", "--is-inside-work-tree", check=False)
    return code == 0 and out.strip() == "true"


def _identity(root: Path) -> list[str]:
    """``-c user.name/email`` for a checkout without a git identity (a CI clone, a cron user)."""
    code, out = git(root, "config", "user.email", check=False)
    if code == 0 and out.strip():
        return []
    return ["-c", "user.name=flywheel retrain", "-c", "user.email=flywheel-retrain@localhost"]


def commit_lock(root: Path, message: str) -> str | None:
    """Commit ``dvc.lock`` alone (other staged changes stay staged); returns the new commit, or
    ``None`` when ``dvc.lock`` did not change.

    Raises:
        CommandError: git refused (not a repository, hooks).
    """
    git(root, "add", "dvc.lock")
    code, _ = git(root, "diff", "--cached", "--quiet", "--", "dvc.lock", check=False)
    if code == 0:
        return None
    git(root, *_identity(root), "commit", "--quiet", "-m", message, "--", "dvc.lock")
    return git(root, "rev-parse", "HEAD")[1].strip()


def dataset_commit(root: Path, md5: str) -> str | None:
    """The first commit whose ``dvc.lock`` holds ``md5`` (the commit that recorded that dataset
    version), ``None`` when no commit does (not committed yet, or not a git checkout)."""
    code, out = git(root, "log", "--reverse", "--format=%H", "-S", md5, "--", "dvc.lock", check=False)
    commits = out.split() if code == 0 else []
    return commits[0] if commits else None
