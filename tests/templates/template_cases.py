"""The VAE templates under test, small enough for a few SVI steps in milliseconds."""

import torch
from float_rounding import one_thread

from vi_vae import VAE

#: 12 pixels shown as a 3 × 4 image: the conv nets see a non-square image.
IMAGE_SHAPE = (3, 4)
INPUT_DIM = 12

#: id -> VAE keyword arguments (beside input_dim, image_shape and seed)
TEMPLATES = {
    "mlp": {"latent_dim": 2, "hidden_sizes": (16,)},
    "conv": {"latent_dim": 2, "hidden_sizes": (16,), "architecture": "conv"},
    "two-layer": {"latent_dims": (3, 2), "hidden_sizes": (16,), "activation": "tanh"},
    "iaf": {"latent_dim": 2, "hidden_sizes": (16,), "flow": "iaf", "flow_layers": 2},
    "vamp": {"latent_dim": 2, "hidden_sizes": (16,), "prior": "vamp", "num_pseudo_inputs": 5},
    "all": {
        "latent_dims": (3, 2),
        "hidden_sizes": (16,),
        "architecture": "conv",
        "flow": "iaf",
        "flow_layers": 1,
        "prior": "vamp",
        "num_pseudo_inputs": 4,
    },
}

#: the ids, sorted, for ``pytest.mark.parametrize("template", TEMPLATE_NAMES)``
TEMPLATE_NAMES = sorted(TEMPLATES)


#: these networks are tiny: one thread is faster than two (no hand-off between them)
single_thread = one_thread


def make_template(name: str, seed: int = 0, **overrides) -> VAE:
    options = {**TEMPLATES[name], **overrides}
    return VAE(input_dim=INPUT_DIM, image_shape=IMAGE_SHAPE, seed=seed, **options)


def binary_data(num_points: int = 64, seed: int = 0) -> torch.Tensor:
    """Four binary prototypes with 5 % of pixels flipped: structure a VAE learns in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, INPUT_DIM, generator=generator) > 0.5).float()
    labels = torch.randint(0, 4, (num_points,), generator=generator)
    flips = (torch.rand(num_points, INPUT_DIM, generator=generator) < 0.05).float()
    return (prototypes[labels] + flips) % 2
