"""The model registry and the promotion gate: what a model version is and which one serving follows.

A trained ONNX file becomes a version in MLflow's model registry (``register``), the gate evaluates
it on the frozen gate set and applies the promotion rules (``gate``), and the gate alone moves the
``champion`` / ``challenger`` aliases, writing its signed record on the version (``promote``). Serving
follows the champion alias: ``serving.champion`` asks :func:`registry.models.resolve_champion`, which
serves a version only when its gate record verifies, else the release model in the repository.

Modules: ``models`` (model versions: register, champion lookup, first-start bootstrap), ``gate_rules``
(the promotion rules, defined once), ``gate`` (the gate's evaluation and its signed record),
``promote`` (the gate: evaluate, decide, move the aliases), ``tracking`` (generic MLflow run
logging: ``start_run`` and its ``Tracker``), ``mlflow_utils`` (tracking URI, health probe, dataset
version, file digests), ``mlflow_server`` (the local MLflow server, ``flywheel mlflow``).

Imports point inward: this package uses ``flywheel`` (the core); ``serving`` imports only
``registry.models`` (lazily, in ``serving.champion``). What a training or an evaluation run logs
(the ONNX export, the plots) is theirs: ``training.train_tracking`` and ``experiments.eval_tracking``
call ``tracking.start_run``, never the other way round (``tracking`` forwards two training names
until ``training/train.py`` imports them from ``training.train_tracking``).
"""
