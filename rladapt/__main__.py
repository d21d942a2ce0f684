"""``python -m rladapt``: the ``rladapt`` command line (see :mod:`rladapt.cli`)."""

import sys

from rladapt.cli import main

sys.exit(main())
