"""Session-wide fixtures for the library's tests."""

import pytest

from cbench.testing import fixtures


@pytest.fixture(scope="session")
def artifacts_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def public_world_dir(artifacts_root):
  return fixtures.public_world(artifacts_root)


@pytest.fixture(scope="session")
def demo_release_dir(artifacts_root):
  return fixtures.demo_release(artifacts_root)


@pytest.fixture(scope="session")
def micro_base_dir(artifacts_root):
  return fixtures.micro_base_model(artifacts_root)
