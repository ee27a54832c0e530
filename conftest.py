"""Collection rules for ``pytest --doctest-modules``.

The deprecated module shims warn on import (and warnings are errors), and
``vi_vae/__main__.py`` runs the command line when imported; none has doctests.
"""

collect_ignore = ["vi_vae/__main__.py", "vi_vae/diagnostics.py", "vi_vae/plots.py"]
