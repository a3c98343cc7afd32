"""Shared core of the diarization flywheel: audio I/O, segments/RTTM, DER, inference helpers.

Everything the serving, training, labeling and pipeline packages have in common lives here,
so the data path reads the same everywhere: audio in -> features -> model -> segments.
"""

__version__ = "0.1.0"
