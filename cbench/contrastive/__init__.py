"""Private contrastive pre-training (Logit-DP vs naive DP-SGD) and probes."""
