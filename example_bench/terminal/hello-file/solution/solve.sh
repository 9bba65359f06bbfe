#!/bin/bash
set -euo pipefail
cd /app
echo 'Hello, world!' > /app/hello.txt
