"""``python -m example_bench.mmlu_pro``: the container entrypoint, evaluating the task the environment names."""

import sys

from .evaluate import main

sys.exit(main())
