"""Differential privacy: DP-SGD engine, sampling, accounting, ledger, audits.

Modules (one job each):
  relations   neighbouring relations and the clipped sum's sensitivity.
  clipping    per-example clipped gradient sums (vmap reference, ghost).
  ghost       layer rules for ghost norms / book-keeping clipping.
  noise       Gaussian noise with a distinct key per leaf; public normaliser.
  sampling    host-side Poisson / truncated Poisson / shuffled samplers.
  accounting  dp_accounting events, epsilon (PLD, RDP cross-check), calibration.
  params      trainable / frozen split (LoRA adapters, selected subtrees).
  dpsgd       `DpSgdConfig`, `make_dp_grad_fn` (optionally over a mesh),
              `calibrate` from a sampler.
  ledger      write-ahead, hash-chained privacy ledger.
  auditing    Clopper-Pearson lower bounds on epsilon from canary scores.

Files named `pp_*` belong to private-prediction accounting.
"""
