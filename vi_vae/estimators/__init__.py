"""ELBO estimators as ``pyro.infer.ELBO`` subclasses, one per file."""

__all__: list[str] = []
