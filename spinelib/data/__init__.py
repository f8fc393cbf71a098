"""Datasets and their checks."""
