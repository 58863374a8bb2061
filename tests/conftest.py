"""Test-suite setup: offline, one torch thread, and a private cache directory.

One thread: the models in tests are tiny, and two OpenMP threads on a 2-core machine that
is busy with anything else run tiny matmuls ~20x slower than one.
"""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FLOWHF_CACHE_DIR", tempfile.mkdtemp(prefix="flowhf-test-cache-"))

import torch  # noqa: E402

torch.set_num_threads(1)
