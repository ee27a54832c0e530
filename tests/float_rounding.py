"""How far two computations of one number may differ when only the order of their sums differs.

Two processes that run the same maths with other intra-op thread counts (torch uses
every core unless told otherwise; ``torchrun`` sets ``OMP_NUM_THREADS=1``), other
shard sizes, or another CPU's kernels add the same float32 terms in another order.
For a sum of n terms, reordering moves the result by at most γ_n·Σ|terms| with
γ_n ≈ n·u, u = 2⁻²⁴ ≈ 6e-8 (Higham, *Accuracy and Stability of Numerical
Algorithms*, §4.2); typically by √n·u. Our largest reductions are the decoder's
(400 inputs) and the sum over 784 pixels, so n ≈ 1,200: at most ~7e-5 relative in the
worst case, ~2e-6 typically, and less after averaging over points. We test at
:data:`RELATIVE` = 1e-5. That still catches every real difference: another draw of z
moves an importance-sampled log p(x) by its Monte Carlo error (0.01–1 nat on a value of
−100 to −550, i.e. 1e-4 to 1e-2 relative).
"""

import contextlib

import pytest
import torch

#: relative tolerance for one number computed with its float sums in another order
RELATIVE = 1e-5


def up_to_reduction_order(expected):
    """``pytest.approx(expected)`` at the tolerance a reordering of float32 sums allows."""
    return pytest.approx(expected, rel=RELATIVE, abs=0)


@contextlib.contextmanager
def one_thread():
    """Run the block on one intra-op thread, as the ranks of ``torchrun`` and of our workers do.

    The same maths on the same thread count and chunk shapes adds in the same order, so a
    one-process reference computed inside this block is bitwise the ranks' numbers.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
