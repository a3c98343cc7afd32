"""Shared core of the diarization flywheel: audio I/O, segments/RTTM, DER, inference helpers.

Everything the serving, training, labeling and pipeline packages have in common lives here,
so the data path reads the same everywhere: audio in -> features -> model -> segments, and the
prediction log's audio store (``audio_store``) and database (``db``) that serving writes and the
flywheel's labeling, datasets and A/B report read.
"""

__version__ = "0.1.0"
