import importlib.util
import sys

spec = importlib.util.spec_from_file_location("stats", "/app/stats.py")
stats = importlib.util.module_from_spec(spec)
try:
    spec.loader.exec_module(stats)
    ok = (
        stats.median([3, 1, 2]) == 2
        and stats.median([4, 1, 3, 2]) == 2.5
        and stats.median([10, 20]) == 15
        and stats.median([5]) == 5
        and stats.mean([1, 2, 3, 4]) == 2.5
    )
except Exception:
    ok = False
sys.exit(0 if ok else 1)
