"""Collection rules for ``pytest --doctest-modules``.

``vi_vae/__main__.py`` runs the command line when imported and has no doctests.
"""

collect_ignore = ["vi_vae/__main__.py"]
