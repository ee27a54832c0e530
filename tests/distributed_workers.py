"""What the ranks of tests/test_distributed.py run, and how they are started (Gloo, CPU).

``launch(function, world_size, directory, *args)`` starts ``world_size`` processes
(torch.multiprocessing, spawn), each joining a Gloo process group through a file
store, calls ``function(*args)`` on every rank and returns the ranks' results in
rank order. It fails the test instead of waiting past its timeout.
"""

import os
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.distributed
import torch.multiprocessing

from vi_vae import ELBO, VAE, annealed_importance_sampling, fit, importance_sampling
from vi_vae.app.run_directory import RunDirectory
from vi_vae.distributed import map_shards, shutdown
from vi_vae.errors import GuideSupportWarning, InputError

#: a launch that takes longer has hung (a 2-rank launch takes ~15 s on 2 busy cores)
LAUNCH_TIMEOUT = 180
#: (num_particles, num_points, chunk_size) of the evaluations every launch repeats:
#: key blocks of 4 points over 10 points (shards 8 + 2 on 2 ranks, 4 + 4 + 2 on 3),
#: one point per block, blocks of 163 points, and one block for all (empty shards)
EVALUATIONS = [(2048, 10, 8192), (5000, 3, 8192), (50, 400, 8192), (5, 30, 8192)]
#: points of the AIS check: shards of 4 and 3 on two ranks, chunks of 2 points inside them
AIS_POINTS = 7


def launch(function, world_size, directory, *args, timeout=LAUNCH_TIMEOUT):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    store = directory / f"store-{function.__name__}-{world_size}-{time.monotonic_ns()}"
    context = torch.multiprocessing.start_processes(
        _entry,
        args=(function, world_size, str(store), str(directory), args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError(f"{function.__name__} on {world_size} ranks hung")
    return [torch.load(directory / f"rank{rank}.pt") for rank in range(world_size)]


def _entry(rank, function, world_size, store, directory, args):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size
    )
    try:
        torch.save(function(*args), Path(directory) / f"rank{rank}.pt")
    except BaseException:
        shutdown()
        raise
    # as the CLI leaves: a barrier first (once, without it, rank 0 aborted in
    # destroy_process_group with "terminate called without an active exception")
    shutdown(synchronize=True)


# -- training ------------------------------------------------------------------------


def delta_model(x):
    """z ~ N(0, I), x | z ~ N(decoder(z), 1): with a point-mass guide the ELBO has no noise."""
    decoder = pyro.module("decoder", _decoder())
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)


def delta_guide(x):
    """q(z|x) = δ(encoder(x)): a reparameterized guide whose draws are not random."""
    encoder = pyro.module("encoder", _encoder())
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(encoder(x), event_dim=1))


_NETS = {}


def _decoder():
    if "decoder" not in _NETS:
        torch.manual_seed(1)
        _NETS["decoder"] = torch.nn.Sequential(
            torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5)
        )
    return _NETS["decoder"]


def _encoder():
    if "encoder" not in _NETS:
        torch.manual_seed(2)
        _NETS["encoder"] = torch.nn.Linear(5, 2)
    return _NETS["encoder"]


def delta_data():
    """17 points: batches of 8 leave a last batch of 1, so one rank has an empty share."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(17, 5, generator=generator), torch.randn(6, 5, generator=generator)


def jitter(batch, generator):
    """A batch transform that consumes the shuffling generator, as dynamic binarization does."""
    return batch + 0.01 * torch.randn(batch.shape, generator=generator)


def train_delta(run_dir):
    _NETS.clear()
    train, validation = delta_data()
    with warnings.catch_warnings():
        # the point mass is chosen for its noiseless objective; its ELBO is compared with
        # nothing here, which is what fit's warning about it is for
        warnings.simplefilter("ignore", GuideSupportWarning)
        result = fit(
            delta_model,
            delta_guide,
            train,
            validation=validation,
            loss=ELBO(1),
            epochs=3,
            batch_size=8,
            learning_rate=0.05,
            batch_transform=jitter,
            sink=None if run_dir is None else RunDirectory(run_dir).checkpoint_sink(),
        )
    return _params(), [record.train_loss for record in result.history]


def per_point_rows():
    """Whether every call of the model got the rows of ``ys`` that go with its rows of x.

    Row n of x starts with n and ``ys[n] = n``; each rank's share of a batch must
    bring its own rows of ``ys`` (17 points in batches of 8: one share is empty).
    """
    _NETS.clear()
    train, _ = delta_data()
    train[:, 0] = torch.arange(len(train), dtype=train.dtype)
    seen = []

    def model(x, ys):
        seen.append(torch.equal(ys, x[:, 0]))
        delta_model(x)

    def guide(x, ys):
        delta_guide(x)

    ys = torch.arange(len(train), dtype=train.dtype)
    fit(model, guide, train, model_kwargs={"ys": ys}, loss=ELBO(1), epochs=2, batch_size=8)
    return seen


def tiny_vae():
    return VAE(input_dim=6, latent_dim=2, hidden_sizes=(8,), seed=0)


def binary_data(num_points, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(num_points, 6, generator=generator) < 0.5).float()


def train_vae_and_resume(directory):
    """Uninterrupted 2 epochs vs 1 epoch then a resumed 2nd, and the ranks' parameters."""
    directory = Path(directory)
    train = binary_data(20)
    options = {"validation": binary_data(5, seed=1), "batch_size": 6, "learning_rate": 0.01}
    vae = tiny_vae()
    straight_sink = RunDirectory(directory / "straight").checkpoint_sink()
    fit(vae.model, vae.guide, train, epochs=2, sink=straight_sink, **options)
    straight = _params()
    vae = tiny_vae()
    stopped = RunDirectory(directory / "stopped").checkpoint_sink()
    fit(vae.model, vae.guide, train, epochs=1, sink=stopped, **options)
    vae = tiny_vae()
    result = fit(vae.model, vae.guide, train, epochs=2, sink=stopped, **options)
    return straight, _params(), result.resumed_from_epoch


def _params():
    return {name: value.detach().clone() for name, value in pyro.get_param_store().items()}


# -- evaluation ------------------------------------------------------------------------


def evaluate(num_particles, num_points, chunk_size):
    vae = tiny_vae()
    estimate, table = importance_sampling(
        vae.model,
        vae.guide,
        binary_data(num_points),
        num_particles=num_particles,
        bound_particles=(1, 5),
        chunk_size=chunk_size,
        # k̂ is a per-point function of the per-point weights; importing ArviZ for it
        # would cost every rank seconds (tests/test_distributed.py checks it in-process)
        compute_pareto_k=False,
        seed=3,
    )
    return per_point(estimate, table)


def annealed(num_points, chunk_size):
    """AIS per point of a tiny VAE (a few steps: the sharding, not the estimate, is tested)."""
    vae = tiny_vae()
    estimate = annealed_importance_sampling(
        vae.model,
        vae.guide,
        binary_data(num_points),
        num_steps=4,
        num_chains=3,
        leapfrog_steps=2,
        chunk_size=chunk_size,
        seed=5,
    )
    return {
        "log_likelihood": estimate.log_likelihood,
        "log_weights": estimate.log_weights,
        "acceptance_rate": estimate.acceptance_rate,
        "step_size": estimate.step_size,
    }


def per_point(estimate, table):
    return {
        "log_likelihood": estimate.log_likelihood,
        "monte_carlo_standard_error": estimate.monte_carlo_standard_error,
        "effective_sample_size": estimate.effective_sample_size,
        **{bound.name: bound.per_point for bound in table},
        **{f"{bound.name} error": bound.monte_carlo_standard_error for bound in table},
    }


def all_checks(directory, evaluations):
    """Everything one launch checks, to pay for starting the processes once."""
    return {
        "delta": train_delta(Path(directory) / "delta"),
        "per_point": per_point_rows(),
        "vae": train_vae_and_resume(directory),
        "evaluations": [evaluate(*settings) for settings in evaluations],
        "ais": annealed(AIS_POINTS, chunk_size=8),
        "failing_shard": failing_shard(10),
        "shard_scaling": shard_scaling_refusals(),
        "reordered": reordered_data(),
    }


def shard_scaling_refusals():
    """fit on every rank: a plate that scales each share to the data, a global site.

    Each rank's loss would count such sites once per rank; both must be refused (the
    messages, or None where fit trained).
    """
    x = torch.linspace(-1.0, 1.0, 16).unsqueeze(-1)

    def pair(scaled, outside):
        def plate(batch, rows):
            return pyro.plate("data", 16 if scaled else len(batch), subsample=rows)

        def model(batch, rows=None):
            offset = pyro.sample("offset", dist.Normal(0.0, 1.0)) if outside else 0.0
            with plate(batch, rows):
                z = pyro.sample("z", dist.Normal(batch.new_zeros(len(batch)), 1.0))
                pyro.sample(
                    "x", dist.Normal((z + offset).unsqueeze(-1), 0.5).to_event(1), obs=batch
                )

        def guide(batch, rows=None):
            if outside:
                pyro.sample("offset", dist.Normal(pyro.param("offset_loc", torch.tensor(0.0)), 0.1))
            with plate(batch, rows):
                pyro.sample("z", dist.Normal(batch[:, 0] / 2, 0.7))

        return model, guide

    def message(scaled, outside, loss, batch_size):
        try:
            kwargs = {"rows": torch.arange(16)} if scaled else None
            pair_ = pair(scaled, outside)
            fit(*pair_, x, epochs=1, batch_size=batch_size, loss=loss, model_kwargs=kwargs)
        except InputError as error:
            return str(error)
        return None

    # batches of 8 of the 16 points: the plate scales them (in one process too); the global
    # site with one batch of all 16 points, which one process would weigh right; the
    # plate with one batch of all 16 points: unscaled there, but each share of 8 is scaled
    return [
        message(True, False, "elbo", 8),
        message(False, True, "pyro-trace-elbo", 16),
        message(False, False, "pyro-trace-elbo", 8),
        message(True, False, "elbo", 16),
    ]


def reordered_data():
    """Rank 1 passes the same points as rank 0 in another order (its own shuffle).

    The shards, cut by position, would hold other points on each rank: some evaluated
    (or trained on) twice, some never. The evaluators and ``fit`` must refuse (the
    messages, or None); ``fit`` also per-point labels paired with other points.
    """
    vae = tiny_vae()
    x = binary_data(12)
    if torch.distributed.get_rank() == 1:
        x = x.flip(0)
    calls = {
        "importance sampling": lambda: importance_sampling(
            vae.model,
            vae.guide,
            x,
            num_particles=4,
            bound_particles=(),
            compute_pareto_k=False,
            seed=3,
        ),
        "ais": lambda: annealed_importance_sampling(
            vae.model, vae.guide, x, num_steps=2, num_chains=2, leapfrog_steps=1, seed=3
        ),
    }
    labels = torch.arange(12)
    if torch.distributed.get_rank() == 1:  # the same points and labels, another pairing
        labels = labels.flip(0)

    def labelled_model(x, labels):
        vae.model(x)

    def labelled_guide(x, labels):
        vae.guide(x)

    calls["fit"] = lambda: fit(vae.model, vae.guide, x, epochs=1, batch_size=4)
    calls["fit labels"] = lambda: fit(
        labelled_model,
        labelled_guide,
        binary_data(12),
        model_kwargs={"labels": labels},
        epochs=1,
        batch_size=4,
    )
    messages = {}
    for name, call in calls.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a 2-step AIS has not converged
                call()
        except InputError as error:
            messages[name] = str(error)
        else:
            messages[name] = None
    return messages


def failing_shard(num_points):
    """Rank 1's shard raises: every rank must raise, none may wait for the others."""

    def evaluate(rows):
        if torch.distributed.get_rank() == 1:
            raise InputError("rank 1 cannot evaluate its shard")
        return list(range(rows.start, rows.stop))

    try:
        map_shards(evaluate, num_points, combine=lambda parts: sum(parts, []))
    except InputError as error:
        return str(error)
    return None
