import sys
from pathlib import Path

names = Path("/app/names.txt").read_bytes().splitlines()
want = b"".join(n + b"\n" for n in sorted(set(names)))
path = Path("/app/unique.txt")
sys.exit(0 if path.is_file() and path.read_bytes() == want else 1)
