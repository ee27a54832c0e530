"""The run configuration: everything needed to reproduce a training run.

The command line builds a :class:`RunConfig`; a run directory stores it as
``config.json`` together with the versions that produced it.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vi_vae._validation import check_choice, check_positive_float, check_positive_int
from vi_vae.data import BINARIZATIONS, DATASETS
from vi_vae.errors import InputError
from vi_vae.estimators import parse_estimator
from vi_vae.latents import get_family
from vi_vae.likelihoods import get_likelihood
from vi_vae.nets import ACTIVATIONS

__all__ = ["RunConfig", "environment"]

DEVICES = ("cpu", "cuda")


@dataclass
class RunConfig:
    """Settings of one training run (see ``vi-vae train --help`` for each).

    ``binarization=None`` means: ``dynamic`` for the Bernoulli likelihood, which
    needs binary data, and ``none`` otherwise; :meth:`validated` resolves it so
    the recorded config always states the choice.
    """

    dataset: str = "mnist-5k"
    data_dir: str | None = None
    binarization: str | None = None
    max_train: int | None = None
    latent: str = "normal"
    latent_dim: int = 20
    likelihood: str = "bernoulli"
    likelihood_options: dict[str, float] = field(default_factory=dict)
    hidden_sizes: list[int] = field(default_factory=lambda: [400])
    activation: str = "relu"
    estimator: str = "elbo"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    kl_weight: float = 1.0
    kl_warmup_epochs: int = 0
    patience: int | None = None
    seed: int = 0
    device: str = "cpu"
    eval_samples: int = 1000
    eval_bounds: list[int] = field(default_factory=lambda: [1, 5, 50])
    eval_points: int | None = None

    def validated(self) -> RunConfig:
        """Check every field (raising :class:`InputError`) and resolve defaults."""
        if self.dataset not in DATASETS and Path(self.dataset).suffix.lower() not in (
            ".npy",
            ".npz",
            ".csv",
        ):
            accepted = ", ".join(list(DATASETS) + ["a .npy/.npz/.csv file"])
            raise InputError(f"unknown dataset {self.dataset!r}; accepted values: {accepted}")
        get_family(self.latent)
        get_likelihood(self.likelihood, **self.likelihood_options)
        parse_estimator(self.estimator)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("device", self.device.split(":")[0], DEVICES)
        for name in ("latent_dim", "epochs", "batch_size", "eval_samples"):
            check_positive_int(name, getattr(self, name))
        for name in ("max_train", "patience", "eval_points"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        for width in self.hidden_sizes:
            check_positive_int("hidden_sizes", width)
        for k in self.eval_bounds:
            check_positive_int("eval_bounds", k)
        check_positive_float("learning_rate", self.learning_rate)
        if not self.kl_weight >= 0:
            raise InputError(f"kl_weight must be >= 0; got {self.kl_weight}")
        if self.kl_warmup_epochs < 0:
            raise InputError(f"kl_warmup_epochs must be >= 0; got {self.kl_warmup_epochs}")
        binarization = self.binarization
        if binarization is None:
            binarization = "dynamic" if self.likelihood == "bernoulli" else "none"
        check_choice("binarization", binarization, BINARIZATIONS)
        if self.likelihood == "bernoulli" and binarization == "none":
            raise InputError(
                "the bernoulli likelihood needs binary data; accepted binarization values: "
                "dynamic, static, threshold (or use --likelihood continuous-bernoulli)"
            )
        return dataclasses.replace(self, binarization=binarization)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild from :meth:`to_dict` output, refusing unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"config has unknown settings {unknown}; accepted: {sorted(names)}")
        return cls(**data)


def environment() -> dict[str, str]:
    """Versions a run records next to its config."""
    import numpy
    import pyro
    import torch

    from vi_vae import __version__

    return {
        "vi_vae": __version__,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
