"""Decoder-only transformer LMs: configs, the linen module, a name registry."""
