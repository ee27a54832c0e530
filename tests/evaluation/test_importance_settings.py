"""ImportanceSettings: importance sampling's K and bound-table k as one object, checked once.

The three entry points (log_marginal_likelihood, bounds, importance_sampling) take the
object or its fields as shortcuts; both spellings give the same numbers to the bit (the
draws are keyed by seed and point, so equal settings mean equal draws).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_pair import VAE_4, X

from vi_vae import (
    ImportanceSettings,
    InputError,
    bounds,
    importance_sampling,
    log_marginal_likelihood,
)
from vi_vae.evaluation import DEFAULT_BOUND_PARTICLES, DEFAULT_NUM_PARTICLES

PAIR = (VAE_4.model, VAE_4.guide, X)


def _estimate_tensors(estimate):
    return (
        estimate.log_likelihood,
        estimate.monte_carlo_standard_error,
        estimate.effective_sample_size,
        estimate.pareto_k,
    )


def _equal(first, second):
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def _table(table):
    """The k of a bound table and its numbers."""
    ks = tuple(bound.num_particles for bound in table)
    numbers = [t for bound in table for t in (bound.per_point, bound.monte_carlo_standard_error)]
    return ks, numbers


def test_the_defaults_are_the_module_s_and_the_k_are_stored_as_a_tuple():
    assert ImportanceSettings() == ImportanceSettings(
        DEFAULT_NUM_PARTICLES, DEFAULT_BOUND_PARTICLES
    )
    settings = ImportanceSettings(num_particles=20, bound_particles=[1, 5])
    assert settings.bound_particles == (1, 5)
    assert ImportanceSettings(bound_particles=iter([2, 1])).bound_particles == (2, 1)
    assert hash(settings) == hash(ImportanceSettings(20, (1, 5)))  # frozen, so usable as a key


def test_the_object_gives_the_numbers_of_its_shortcuts():
    by_object = log_marginal_likelihood(
        *PAIR, settings=ImportanceSettings(num_particles=40), seed=1
    )
    by_position = log_marginal_likelihood(*PAIR, 40, seed=1)
    assert by_object.num_particles == by_position.num_particles == 40
    assert _equal(_estimate_tensors(by_object), _estimate_tensors(by_position))

    table_by_object = bounds(
        *PAIR, settings=ImportanceSettings(num_particles=30, bound_particles=(1, 5)), seed=2
    )
    table_by_position = bounds(*PAIR, [1, 5], 30, seed=2)
    ks, numbers = _table(table_by_object)
    assert ks == _table(table_by_position)[0] == (1, 5)
    assert _equal(numbers, _table(table_by_position)[1])

    settings = ImportanceSettings(num_particles=30, bound_particles=(1, 5))
    estimate, table = importance_sampling(*PAIR, settings=settings, seed=3)
    estimate_k, table_k = importance_sampling(
        *PAIR, num_particles=30, bound_particles=(1, 5), seed=3
    )
    assert _equal(_estimate_tensors(estimate), _estimate_tensors(estimate_k))
    assert _equal(_table(table)[1], _table(table_k)[1])


def test_a_shortcut_edits_the_object():
    preset = ImportanceSettings(num_particles=20, bound_particles=(1, 5))
    estimate, table = importance_sampling(*PAIR, settings=preset, num_particles=30, seed=4)
    assert estimate.num_particles == 30
    assert _table(table)[0] == (1, 5)  # the field not given stays the object's
    expected, expected_table = importance_sampling(
        *PAIR, num_particles=30, bound_particles=(1, 5), seed=4
    )
    assert _equal(_estimate_tensors(estimate), _estimate_tensors(expected))
    assert _equal(_table(table)[1], _table(expected_table)[1])

    assert _table(bounds(*PAIR, (2,), settings=preset, seed=4))[0] == (2,)
    assert log_marginal_likelihood(*PAIR, 25, settings=preset, seed=4).num_particles == 25
    # a shortcut left at None changes nothing
    kept = log_marginal_likelihood(*PAIR, None, settings=preset, seed=4)
    assert kept.num_particles == 20


def test_log_marginal_likelihood_needs_no_bound_table():
    # K below the default k = 50: only a bound table needs k <= K
    assert log_marginal_likelihood(*PAIR, 10, seed=0).num_particles == 10
    estimate, table = importance_sampling(*PAIR, num_particles=10, bound_particles=(), seed=0)
    assert table == [] and estimate.num_particles == 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_particles": 0}, "num_particles must be an integer >= 1; got 0"),
        ({"num_particles": 2.5}, "num_particles must be an integer >= 1; got 2.5"),
        ({"num_particles": True}, "num_particles must be an integer >= 1"),
        ({"bound_particles": (1, 0)}, "bound_particles must be an integer >= 1; got 0"),
        ({"bound_particles": 5}, "bound_particles must be a sequence of integers >= 1"),
        ({"bound_particles": "15"}, "bound_particles must be a sequence of integers >= 1"),
        # a repeated k made the table show the same row twice
        ({"bound_particles": (2, 1, 2)}, r"bound_particles gives k = 2 more than once"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(changes, message):
    with pytest.raises(InputError, match=message):
        ImportanceSettings(**changes)
    with pytest.raises(InputError, match=message):  # the shortcut is checked by the same check
        importance_sampling(*PAIR, seed=0, **changes)
    with pytest.raises(InputError, match=message):  # and so is an edit of a valid object
        dataclasses.replace(ImportanceSettings(), **changes)


def test_the_entry_points_refuse_what_their_table_cannot_hold():
    with pytest.raises(InputError, match="bound_particles must list at least one k"):
        bounds(*PAIR, settings=ImportanceSettings(bound_particles=()))
    with pytest.raises(InputError, match=r"num_particles \(10\) must be at least the largest k"):
        bounds(*PAIR, [1, 50], 10)
    with pytest.raises(InputError, match="settings must be an instance of ImportanceSettings"):
        log_marginal_likelihood(*PAIR, settings={"num_particles": 10})
    with pytest.raises(TypeError, match=r"^importance_sampling\(\) got unexpected keyword"):
        ImportanceSettings.build(None, {"num_chains": 3}, owner="importance_sampling")
