"""Example benchmarks shipped with pytest-benchflow; MMLU-Pro is the reference one."""
