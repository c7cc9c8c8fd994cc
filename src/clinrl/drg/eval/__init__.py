"""Evaluation: sampling a model on cases, Pass@k/Maj@k metrics, constrained decoding, prediction, plots."""
