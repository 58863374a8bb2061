#!/usr/bin/env python
"""Exact-target benchmark (see flowhf/cli/exact.py for every flag; also `flowhf exact`).

python benchmarks/exact_target.py --objective tb --logz batch --seconds 300 --seed 0 --json out.json
python benchmarks/exact_target.py --all --seconds 300 --json benchmarks/results/exact_target.json
python benchmarks/exact_target.py --objective subtb --target my_target.py --steps 2000 --json out.json
"""

import sys

from flowhf.cli.exact import main

if __name__ == "__main__":
    sys.exit(main())
