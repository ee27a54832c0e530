"""Shared by the compiled-path tests: one compile thread, one torch thread, tiny models.

(The folder is not called ``compiled``: pytest imports every ``conftest.py`` as
the module ``conftest``, and a folder that sorts before ``tests/conftest.py``
would shadow it when ``--doctest-modules`` collects that file.)

Compiling is the expensive part of these tests (a first compile in a fresh
process a dozen seconds, each further graph a few), so the models are tiny, the
compiled estimators are shared through module-scoped fixtures where a test
only reads them, and inductor compiles in this process: its pool of compile
workers costs more to start than it saves on two cores.
"""

import sys
from pathlib import Path

import pytest
import torch
import torch._inductor.config as inductor_config

inductor_config.compile_threads = 1
# the user-written linear Gaussian pair lives beside the estimator tests
sys.path.insert(0, str(Path(__file__).parents[1] / "estimators"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors on a shared two-core machine: one torch thread is never much slower."""
    torch.set_num_threads(1)


@pytest.fixture
def traced_only(monkeypatch):
    """Run the traced graphs without torch.compile: tests of the tracing itself, seconds faster."""
    monkeypatch.setenv("VI_VAE_COMPILE_BACKEND", "none")
