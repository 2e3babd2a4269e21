"""One local Ray instance for every Ray test (starting one takes seconds): daemons under test
connect to it as further drivers, as a daemon connects to a real cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hpod[ray]')")
    if not hasattr(ray, "init"):  # tests/ray itself, seen as a namespace package
        pytest.skip("Ray is not installed (pip install 'hpod[ray]')")
    # ray.init also exports RAY_AUTH_MODE=token: the daemons started by the tests inherit it
    # and find the cluster's token in ~/.ray, as `ray start` users do (docs/cluster.md).
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
