import sys

try:
    answer = open("/app/answer.txt").read().strip()
except OSError:
    sys.exit(1)
sys.exit(0 if answer == "87.42" else 1)
