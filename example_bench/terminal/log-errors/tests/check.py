import json
import sys

try:
    found = json.load(open("/app/errors.json"))
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if found == {"db": 3, "api": 1, "cache": 1} else 1)
