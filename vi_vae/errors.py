"""Exceptions that carry a message meant for the person running vi_vae."""

__all__ = [
    "BINARIZE_HINT",
    "AISConvergenceWarning",
    "ConvergenceWarning",
    "CompileWarning",
    "InputError",
    "LocalOptimizationWarning",
    "LowPrecisionWarning",
    "RandomDensityWarning",
    "TF32Warning",
    "TrainingError",
    "UnobservedPointsWarning",
    "UnverifiedCheckpointWarning",
    "UnverifiedFileWarning",
]

#: how to make grey data fit a Bernoulli likelihood
BINARIZE_HINT = (
    "binarize it (dynamic, static or threshold) or use a likelihood for values in [0, 1] "
    "(continuous-bernoulli)"
)


class InputError(ValueError):
    """Bad input from the user: the message names the argument and what it accepts.

    The command line turns it into one line on stderr and exit status 2.
    """


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where it stopped."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint of an older format loaded: part of its content is not checksummed."""


class UnverifiedFileWarning(UserWarning):
    """A run directory's JSON file of an older vi_vae was read: it has no checksum to check."""


class CompileWarning(UserWarning):
    """``compile=True`` could not compile something and runs it eagerly; the message says why."""


class ConvergenceWarning(UserWarning):
    """An estimate of log p(x) has not converged; the message says which setting to raise.

    The result's ``convergence`` says which check failed. Importance sampling warns with
    this class, AIS and BDMC with its subclass :class:`AISConvergenceWarning`.
    """


class AISConvergenceWarning(ConvergenceWarning):
    """AIS or BDMC has not converged, or could not start as asked; the message says what to do.

    The result's ``convergence`` says which check failed.
    """


class GuideSupportWarning(UserWarning):
    """The guide cannot propose all of the prior's support at some latent site.

    Importance sampling from it estimates only the part of p(x) on the guide's support;
    the estimate's ``narrower_guide_sites`` names the sites. The estimators (and so
    ``fit``) warn with it, too, at their first call of a guide that draws a site from a
    point mass: its ELBO is log p(x, z) at the point, not a lower bound on log p(x) (the
    evaluators refuse such a guide).
    """


class UnobservedPointsWarning(UserWarning):
    """Some data points have every observed entry masked: the model observes nothing of them.

    An evaluator's log p(x_n) of such a point is the log probability of observing
    nothing, 0, whatever the model; the mean over points counts those zeros. Leave the
    points out of ``x``, or check the mask.
    """


class LocalOptimizationWarning(UserWarning):
    """The per-point optimization of q* (:func:`vi_vae.inference_gaps`) has not converged.

    The result's ``local_convergence`` says by how much its ELBO was still rising.
    """


class RandomDensityWarning(UserWarning):
    """The model's log density of the same x and z changes between calls.

    Something in the model draws beyond its sample sites (e.g. ``obs=torch.bernoulli(x)``,
    a binarization inside the model). :func:`vi_vae.fit`'s validation ELBO, scored with
    the networks in eval mode, then averages over that randomness; the evaluators refuse
    such a pair, since its log p(x) is not that of one model. Keep the randomness in
    sample sites, or binarize outside the model (``fit``'s ``batch_transform``).
    """


class LowPrecisionWarning(UserWarning):
    """``fit``'s validation ELBO comes from log densities in half precision.

    A model in ``bfloat16`` or ``float16`` (or run under ``torch.autocast``) computes a
    log density of hundreds of terms rounded by nats; early stopping and the best epoch
    compare validation ELBOs so rounded. The evaluators refuse such a pair outright.
    """


class TF32Warning(UserWarning):
    """An evaluator's products or convolutions run in TF32 on the GPU (10 bits of mantissa).

    ``torch.backends.cudnn.allow_tf32`` is true by default, so a convolutional pair's
    convolutions round their inputs to TF32 on a GPU with tensor cores; matrix products
    do when ``torch.backends.cuda.matmul.allow_tf32`` is set or the float32 matmul
    precision is not ``"highest"``. A log p(x) sums hundreds of terms computed from
    them, and carries their rounding. The ``vi-vae`` commands turn both off.
    """
