"""``fit(compile=True)`` trains as eager fit does: same losses, same parameters, one compile.

Tolerance: relative 1e-5 (float32, the same draws; see test_compiled_estimators.py),
after 4 Adam steps.
"""

import pytest
import torch
from compiled_cases import binary_data, tiny_vae
from pyro.infer import Trace_ELBO
from torch.testing import assert_close

from vi_vae import InputError, fit
from vi_vae.estimators import ELBO
from vi_vae.optim import Adam


def test_compiled_fit_follows_eager_fit_through_a_kl_warmup():
    x = binary_data(16)
    settings = {"epochs": 2, "batch_size": 8, "kl_warmup_epochs": 2, "learning_rate": 0.01}
    eager_vae, compiled_vae = tiny_vae(), tiny_vae()
    eager = fit(eager_vae.model, eager_vae.guide, x, loss=ELBO(1), **settings)
    loss = ELBO(1, compile=True)
    compiled = fit(compiled_vae.model, compiled_vae.guide, x, loss=loss, compile=True, **settings)
    assert [row.kl_weight for row in compiled.history] == [0.5, 1.0]
    for row, compiled_row in zip(eager.history, compiled.history, strict=True):
        assert compiled_row.train_loss == pytest.approx(row.train_loss, rel=1e-5)
    for parameter, compiled_parameter in zip(
        eager_vae.parameters(), compiled_vae.parameters(), strict=True
    ):
        assert_close(compiled_parameter, parameter, rtol=1e-5, atol=1e-6)
    # the KL weight is a tensor the compiled step reads: the warm-up did not recompile
    assert loss._compiled.num_compiled == 1


def test_compiled_fit_steps_with_the_fused_adam_and_eager_fit_with_the_bitwise_one():
    # fit's default optimizer (TrainSettings.optimizer): the fused kernel where the loss is
    # compiled (its numbers already differ by rounding), the loop's bits where it is not.
    # Each default run equals, to the bit, the same run given that optimizer explicitly,
    # and the fused and multi-tensor runs differ (fused rounds each update differently)
    x = binary_data(16)
    settings = {"epochs": 2, "batch_size": 8, "learning_rate": 0.01}

    def trained(compile, adam=None):
        vae = tiny_vae()
        optimizer = {} if adam is None else {"optimizer": Adam({"lr": 0.01, **adam})}
        fit(
            vae.model,
            vae.guide,
            x,
            loss=ELBO(1, compile=compile),
            compile=compile,
            **settings,
            **optimizer,
        )
        return torch.cat([parameter.detach().flatten() for parameter in vae.parameters()])

    compiled, fused = trained(True), trained(True, {"fused": True})
    assert torch.equal(compiled, fused)
    assert not torch.equal(compiled, trained(True, {"foreach": True}))
    assert torch.equal(trained(False), trained(False, {"foreach": True}))


def test_bad_compile_arguments_of_fit_are_refused():
    vae, x = tiny_vae(), binary_data(4)
    with pytest.raises(InputError, match="compile must be True or False; got 'yes'"):
        fit(vae.model, vae.guide, x, compile="yes")
    with pytest.raises(InputError, match="Trace_ELBO has no compiled path"):
        fit(vae.model, vae.guide, x, loss=Trace_ELBO(), compile=True)
    assert torch.isfinite(next(vae.parameters())).all()
