import sys

try:
    answer = open("/app/largest.txt").read().strip()
except OSError:
    sys.exit(1)
sys.exit(0 if answer == "logs/archive/2023.log" else 1)
