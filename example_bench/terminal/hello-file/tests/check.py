import sys
from pathlib import Path

path = Path("/app/hello.txt")
sys.exit(0 if path.is_file() and path.read_text() == "Hello, world!\n" else 1)
