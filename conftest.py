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


def pytest_addoption(parser):
  parser.addoption(
      "--seed", default=None,
      help="Statistical tests' seeds: 'random' (fresh ones, printed) or an "
      "integer offset; default: the suite's fixed seeds.")


def pytest_configure(config):
  seed = config.getoption("--seed")
  if seed is not None:
    if seed != "random":
      int(seed)  # a bad value fails here, by name
    os.environ["CBENCH_TEST_SEED"] = seed


def pytest_report_header(config):
  seed = os.environ.get("CBENCH_TEST_SEED")
  return [f"statistical test seeds: {seed}"] if seed else []
