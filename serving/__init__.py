"""Online serving: a Ray Serve A/B endpoint over the neural arms, with a prediction log.

Modules (one job each): ``settings`` (environment), ``routing`` (A/B split), ``champion`` (which model
file an arm serves), ``arms`` (an arm: model + hot reload), ``backends`` (arms in process or as Serve
deployments), ``limits`` (bounded upload reading and input checks), ``auth`` (API and admin keys),
``prediction_log`` (off-path batched logging with a spool; the audio store and the database it writes
are the core's ``flywheel.audio_store`` and ``flywheel.db``), ``service`` (the request logic), ``api``
(HTTP routes), ``app`` (the Serve application), ``standalone`` (the same API without Ray), ``control``
(deploy, weights), ``runner`` (the ``make up`` process), ``cli`` (``flywheel ab|db|serve|audio``).
"""
