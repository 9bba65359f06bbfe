#!/bin/bash
set -euo pipefail
cd /app
mkdir -p dist
python3 -m zipapp src/calc -o dist/calc.pyz
