import sys

import ops

if __name__ == "__main__":
    name, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(getattr(ops, name)(a, b))
