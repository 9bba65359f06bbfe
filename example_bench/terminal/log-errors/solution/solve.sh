#!/bin/bash
set -euo pipefail
cd /app
python3 - <<'EOF'
import collections, json
counts = collections.Counter()
for line in open("/app/server.log"):
    parts = line.split()
    if len(parts) >= 4 and parts[2] == "ERROR":
        counts[parts[3].rstrip(":")] += 1
json.dump(counts, open("/app/errors.json", "w"))
EOF
