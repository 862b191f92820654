"""Fixtures for injection tests; the fakes themselves are in tests/fake_gpu_host.py."""

import os

import pytest
from fake_gpu_host import FakeHost, build_fake_host


@pytest.fixture(scope="session")
def fake_host(tmp_path_factory) -> FakeHost:
    if os.geteuid() != 0:
        pytest.fail("the fake driver tree needs root to make device nodes (mknod)")
    return build_fake_host(tmp_path_factory.mktemp("host"))
