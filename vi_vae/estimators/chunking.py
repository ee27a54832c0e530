"""How the particle estimators split their draws into passes, and redraw a pass exactly.

A pass holds at most ``chunk_size`` (particle, data point) pairs. Redrawing a
chunk with the same random numbers (the second, gradient pass of the chunked
fallback in :mod:`vi_vae.estimators.particle_estimator`) needs the random-number
state before it, which :func:`vi_vae.keys.get_rng_state` saves and
:func:`vi_vae.keys.set_rng_state` restores.
"""

from __future__ import annotations

__all__ = ["chunk_sizes"]


def chunk_sizes(num_particles: int, batch_size: int, chunk_size: int) -> list[int]:
    """Particles per pass so that each pass holds at most ``chunk_size`` pairs (at least 1).

    Example:
        >>> chunk_sizes(10, 4, 16)
        [4, 4, 2]
    """
    per_pass = max(1, chunk_size // max(1, batch_size))
    return [min(per_pass, num_particles - start) for start in range(0, num_particles, per_pass)]
