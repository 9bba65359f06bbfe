#!/bin/bash
set -euo pipefail
cd /app
python3 - <<'EOF'
import csv
rows = csv.DictReader(open("/app/sales.csv"))
total = sum(int(r["units"]) * float(r["unit_price"]) for r in rows if r["region"] == "north")
open("/app/answer.txt", "w").write(f"{total:.2f}\n")
EOF
