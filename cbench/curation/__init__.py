"""Curation loops on synthetic data: train, generate, verify, retrain."""
