#!/bin/bash
# Writes the reward (1 or 0) that /tests/check.py decides to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if python3 /tests/check.py; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
