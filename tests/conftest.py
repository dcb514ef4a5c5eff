"""What the test suite shares: one trained tiny model per session, one small world, and the order the
tests are handed to xdist workers in.

* ``slow`` (declared in pytest.ini) marks the tests that train, run xdist in subprocesses, or run bench cells
  end to end in pytest subprocesses. ``pytest tests -m "not slow"`` is the fast suite (under 3 minutes on 2
  cores); ``pytest tests`` runs everything on two xdist workers (the root ``conftest.py``).
* :func:`trained_tiny` trains tiny-a at most once per session, in a qclip cache shared by the session's
  xdist workers (the cache's file locks make a second worker wait and read, never train again). The tests
  that use it live in tests/test_embedded.py, which the root conftest's scheduler keeps on one worker
  (``ONE_WORKER_FILES``): the other worker runs the rest of the suite meanwhile.
* Hypothesis: ``HYPOTHESIS_PROFILE=ci`` (what ``.ci/run`` sets) draws the same examples on every run, so a
  landing is not decided by which examples one run happened to draw; a plain ``pytest tests`` explores new
  ones each time, and a failure it finds goes into the test as an ``@example``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

TINY_MODEL = "tiny-a"

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def session_cache_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A qclip cache folder for this test session, the same folder on every xdist worker of the run.

    A worker's base temp is ``<the run's base temp>/popen-gwN``, so its parent is shared by the workers of
    this run and by no other run. A fresh folder (not ``$QCLIP_CACHE``): every session trains tiny-a
    once through the cache, so a stale cached model never stands in for what the current code trains.
    """
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        base = base.parent
    root = base / "qclip-session-cache"
    root.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("QCLIP_TINY_MODE"):
        # native training mode, as `qclip prepare --native` leaves a cache (bench runs in subprocesses on this
        # cache load the same weights): reproducible mode, the default, trains the same recipe with portable
        # kernels at 2.2x the CPU, which alone would take tiny-a's worker past the suite's 6 minutes on
        # 2 cores; tests/models/test_reproducible.py covers that mode. QCLIP_TINY_MODE=reproducible pytest
        # tests runs these tests on reproducible weights.
        from qclip.models.tiny.reproducible import remember_mode

        remember_mode(root, "native")
    return root


@pytest.fixture(scope="session")
def synthetic_test_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(root, manifest) of the small synthetic world (``size="test"``, seed 0), generated once per session
    (per xdist worker) for the tests that read it: the generator's and the tiny models' tests. Read-only:
    a test that changes a world generates its own."""
    from qclip.data.synthetic import generate_world

    root = tmp_path_factory.mktemp("test-world")
    return root, generate_world(root, seed=0, size="test", progress=False)


@pytest.fixture(scope="session")
def trained_tiny(session_cache_root: Path):
    """(cache, world root, spec, trained module in eval mode) of tiny-a on the default synthetic world.

    Built through the qclip cache exactly as a ``tiny:tiny-a`` cell loads it (``tiny_weights`` trains on a
    miss), once per session: other fixtures, and bench runs in subprocesses given ``--qclip-cache
    cache.root``, find the weights there."""
    from qclip.cache import Cache
    from qclip.data.synthetic.location import ensure_world
    from qclip.models.tiny import TINY_MODELS, build_tiny_module
    from qclip.models.tiny.weights import tiny_weights

    cache = Cache(session_cache_root)
    root = ensure_world(cache, progress=False)
    state, _ = tiny_weights(TINY_MODEL, cache, progress=False)
    spec = TINY_MODELS[TINY_MODEL]
    module = build_tiny_module(spec)
    module.load_state_dict(state)
    return cache, root, spec, module.eval()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, slow tests first (a stable sort; every worker sorts the same way, so their
    collections agree): the root conftest's scheduler hands tests out in this order, and a long test handed
    out last would leave the other worker idle while it runs. Serial runs keep the file order."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)
