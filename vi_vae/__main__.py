"""``python -m vi_vae`` (and ``torchrun -m vi_vae``): the ``vi-vae`` command."""

import sys

from vi_vae.cli import main

sys.exit(main())
