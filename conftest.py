"""Test setup shared by the whole repository.

Every test process sees 8 fake CPU devices, so sharded code paths run on the
same meshes as on an 8-chip host. The flag must be set before jax is imported.
"""

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8"
)
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
