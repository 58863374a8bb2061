"""``python -m flowhf.cli ...`` (and ``torchrun -m flowhf.cli ...``): the `flowhf` console script."""

import sys

from flowhf.cli.main import main

sys.exit(main())
