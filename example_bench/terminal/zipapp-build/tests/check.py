import subprocess
import sys
import zipfile

path = "/app/dist/calc.pyz"
if not zipfile.is_zipfile(path):
    sys.exit(1)
out = [
    subprocess.run([sys.executable, path, op, "6", "7"], capture_output=True, text=True).stdout.strip()
    for op in ("add", "mul")
]
sys.exit(0 if out == ["13", "42"] else 1)
