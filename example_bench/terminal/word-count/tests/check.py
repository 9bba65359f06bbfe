import sys
from pathlib import Path

words = len(Path("/app/input.txt").read_text().split())
try:
    sys.exit(0 if int(Path("/app/count.txt").read_text().strip()) == words else 1)
except (OSError, ValueError):
    sys.exit(1)
