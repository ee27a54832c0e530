"""What every test shares: a fresh Pyro state, pinned threads, the helper folders, and
the long process checks (``beside.Job``) started as soon as the tests are collected.

The conftest of one folder only: pytest imports every ``conftest.py`` of these
non-package folders as the module ``conftest``, so a second one (in
``tests/evaluation`` or ``tests/torch_compile``) would shadow this one.
"""

import os
import sys
from pathlib import Path

import pyro
import pytest
import torch
import torch._inductor.config as inductor_config
from beside import Job, Queue

TESTS = Path(__file__).parent
#: folders of small-tensor tests (AIS: thousands of tiny ops; the compiled path; the
#: latent families' battery) in which a second intra-op thread on a shared two-core
#: machine cost 5-15x in synchronization and gained nothing
ONE_THREAD_FOLDERS = (TESTS / "evaluation", TESTS / "torch_compile", TESTS / "latents")

#: ``VI_VAE_TEST_THREADS=N`` pins every test to N intra-op threads instead (CI runs the
#: suite under 1 and 2): no test may pass or fail by the thread count, since the order
#: of a float reduction, and so its last bits, follows it
THREADS = int(os.environ["VI_VAE_TEST_THREADS"]) if "VI_VAE_TEST_THREADS" in os.environ else None

# the suite picks the compile backend itself (``traced_only`` sets "none"): a value left
# in the shell (docs/howto/compiled.md) ran every inductor test, here and in the commands
# it starts, on that backend instead, and they passed without compiling anything
os.environ.pop("VI_VAE_COMPILE_BACKEND", None)
# inductor compiles in this process: its pool of compile workers costs more to
# start than it saves on two cores
inductor_config.compile_threads = 1
# the user-written linear Gaussian pair lives beside the estimator tests
sys.path.insert(0, str(TESTS / "estimators"))


@pytest.fixture(scope="session", autouse=True)
def _jobs_beside_the_suite(request, tmp_path_factory):
    """Start the long process checks of the collected modules now, beside the other tests.

    Each test module that declares a ``beside.Job`` (or a dict of them) gets it queued
    here, before the first test: one at a time, in the order of the tests; its test waits
    for it. Jobs still running when the session ends are killed.
    """
    modules = {}  # each module with selected tests, in the order its tests run
    for item in request.session.items:
        modules.setdefault(getattr(item, "module", None), None)
    jobs = []
    for module in filter(None, modules):
        for value in vars(module).values():
            declared = value.values() if isinstance(value, dict) else [value]
            jobs += [job for job in declared if isinstance(job, Job)]
    queue = Queue([(job, tmp_path_factory.mktemp(job.name)) for job in jobs])
    yield
    queue.stop()


@pytest.fixture(autouse=True)
def _fresh_pyro_state(request):
    """Each test starts with an empty param store, a seeded RNG and pinned threads."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    one_thread = any(request.node.path.is_relative_to(folder) for folder in ONE_THREAD_FOLDERS)
    torch.set_num_threads(THREADS or (1 if one_thread else 2))
    yield
    pyro.clear_param_store()


@pytest.fixture
def traced_only(monkeypatch):
    """Run the traced graphs without torch.compile: tests of the tracing itself, seconds faster."""
    monkeypatch.setenv("VI_VAE_COMPILE_BACKEND", "none")
