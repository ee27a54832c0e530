"""What importance sampling from the guide does: K and the bound table's k, checked once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vi_vae._validation import check_positive_int
from vi_vae.errors import InputError
from vi_vae.settings import Settings

__all__ = ["DEFAULT_BOUND_PARTICLES", "DEFAULT_NUM_PARTICLES", "ImportanceSettings"]

#: K = 5000 importance samples per point, the evaluation setting of Burda et al. (2016), §5.
DEFAULT_NUM_PARTICLES = 5000
#: the k of the IWAE-k bounds in a bound table (k = 1 is the ELBO)
DEFAULT_BOUND_PARTICLES = (1, 5, 50)


@dataclass(frozen=True)
class ImportanceSettings(Settings):
    """What importance sampling from the guide does: K and the bound table's k, checked once here.

    The one declaration of importance sampling's settings: :func:`vi_vae.log_marginal_likelihood`,
    :func:`vi_vae.bounds` and :func:`vi_vae.importance_sampling` take one (or build one
    from keyword shortcuts, :func:`vi_vae.settings.merge`), and the application's config
    embeds it. How the work is split (``chunk_size``), where it runs and whether it is compiled are
    execution options of those functions, not settings: they do not change the numbers.

    Attributes:
        num_particles: K, importance samples per point (default 5000, as Burda et al.).
        bound_particles: the k of the IWAE-k bounds in a bound table (k = 1 is the ELBO),
            each once, in the order given, stored as a tuple; ``()`` makes no table
            (:func:`vi_vae.log_marginal_likelihood`). A table needs every k <= K, which
            the functions that make one check.

    Raises:
        InputError: naming the first bad setting and its accepted values.
    """

    num_particles: int = DEFAULT_NUM_PARTICLES
    bound_particles: tuple[int, ...] = DEFAULT_BOUND_PARTICLES

    def __post_init__(self) -> None:
        where = self._where  # the prefix of the names in errors (vi_vae.settings.Settings)
        check_positive_int(where + "num_particles", self.num_particles)
        ks = self.bound_particles
        if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
            raise InputError(
                f"{where}bound_particles must be a sequence of integers >= 1, e.g. (1, 5, 50); "
                f"got {ks!r}"
            )
        ks = tuple(ks)
        for k in ks:
            check_positive_int(where + "bound_particles", k)
        repeated = sorted({k for k in ks if ks.count(k) > 1})
        if repeated:
            raise InputError(
                f"{where}bound_particles gives k = {', '.join(map(str, repeated))} more than "
                f"once; give each k once (a table has one row per k); got {ks!r}"
            )
        object.__setattr__(self, "bound_particles", ks)

    def table_particles(self) -> tuple[int, ...]:
        """The k of the bound table, refused when one is above K (no group of k can be drawn)."""
        ks = self.bound_particles
        if ks and max(ks) > self.num_particles:
            raise InputError(
                f"num_particles ({self.num_particles}) must be at least the largest k in "
                f"bound_particles ({max(ks)})"
            )
        return ks
