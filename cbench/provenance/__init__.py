"""Learning from synthetic data: ERM vs provenance-aware learners."""
