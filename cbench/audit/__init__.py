"""Empirical privacy audits: one-run DP-SGD audits and canary exposure."""
