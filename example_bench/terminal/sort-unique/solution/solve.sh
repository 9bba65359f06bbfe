#!/bin/bash
set -euo pipefail
cd /app
LC_ALL=C sort -u names.txt > unique.txt
