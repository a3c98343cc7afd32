"""Evaluation and tuning: DER evaluation, threshold and pooling tuning, plots, the A/B report."""
