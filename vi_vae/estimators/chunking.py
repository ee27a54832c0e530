r"""The particle estimators' chunked fallback: passes of at most ``chunk_size`` pairs.

A pass holds at most ``chunk_size`` (particle, data point) pairs. When one pass of
all ``num_particles`` would hold more, a first pass without gradients draws the
particles chunk by chunk (:func:`draw_values`), keeping only their values and the
random-number state before each chunk (:func:`vi_vae.keys.get_rng_state`); the
gradient's coefficients are computed from all of them; a second pass redraws each
chunk from its saved state, the very same z, and accumulates its share of
:math:`\sum c\, \nabla \log w` (:func:`redraw_gradients`). Both passes run a chunk
compiled where the estimator compiles (:mod:`vi_vae.estimators.compiled_passes`),
eagerly otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from vi_vae.estimators import compiled_passes
from vi_vae.estimators.compiled_passes import PassCall, PassFunctions
from vi_vae.estimators.gradient_terms import GradientTerm
from vi_vae.keys import get_rng_state, set_rng_state
from vi_vae.weights import WeightedTraces

__all__ = ["chunk_sizes", "draw_values", "redraw_gradients"]


def chunk_sizes(num_particles: int, batch_size: int, chunk_size: int) -> list[int]:
    """Particles per pass so that each pass holds at most ``chunk_size`` pairs (at least 1).

    Example:
        >>> chunk_sizes(10, 4, 16)
        [4, 4, 2]
    """
    per_pass = max(1, chunk_size // max(1, batch_size))
    return [min(per_pass, num_particles - start) for start in range(0, num_particles, per_pass)]


def draw_values(
    passes: PassFunctions, call: PassCall, chunks: list[int], compiled: bool
) -> tuple[Tensor, list[tuple]]:
    """All particles' values ``[num_particles, batch]``, drawn chunk by chunk without gradients.

    Also returns the random-number state before each chunk, to redraw it exactly.
    """
    parts, states = [], []
    with torch.no_grad():
        for count in chunks:
            states.append(get_rng_state())
            chunk = dataclasses.replace(call, num_particles=count)
            drawn = compiled_passes.values(passes, chunk) if compiled else None
            if drawn is None:  # eagerly
                set_rng_state(states[-1])
                parts.append(passes.particle_values(chunk.trace(passes, call.args, call.kwargs)))
            else:
                parts.append(drawn[0])
    return torch.cat(parts), states


def redraw_gradients(
    passes: PassFunctions,
    call: PassCall,
    chunks: list[int],
    states: list[tuple],
    terms: list[GradientTerm],
    compiled: bool,
    backward: Callable[[WeightedTraces, list[GradientTerm]], None],
) -> None:
    """Redraw each chunk from its state and accumulate its rows of ``terms`` into ``.grad``.

    ``backward(traces, chunk_terms)`` accumulates an eager chunk's gradient; the
    random-number state after the last draw is restored at the end.
    """
    state_after = get_rng_state()
    start = 0
    for count, state in zip(chunks, states, strict=True):
        set_rng_state(state)
        rows = slice(start, start + count)
        chunk_terms = [
            dataclasses.replace(term, coefficients=term.coefficients[rows]) for term in terms
        ]
        start += count
        chunk = dataclasses.replace(call, num_particles=count)
        if compiled and compiled_passes.chunk_gradients(passes, chunk, chunk_terms):
            continue
        set_rng_state(state)
        backward(chunk.trace(passes, call.args, call.kwargs), chunk_terms)
    set_rng_state(state_after)
