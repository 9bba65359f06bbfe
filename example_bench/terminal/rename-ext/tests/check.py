import sys
from pathlib import Path

photos = Path("/app/photos")
found = {p.name: p.read_text() for p in photos.iterdir()} if photos.is_dir() else {}
want = {"beach.jpg": "beach\n", "city.jpg": "city\n", "cat.jpg": "cat\n", "notes.txt": "keep me\n"}
sys.exit(0 if found == want else 1)
