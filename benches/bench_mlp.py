"""ferrax against PyTorch alone: the earlier benchmark, now a thin wrapper of compare.py.

Kept so that the commands quoted in older issue notes still run; they mean
``compare.py --peers torch`` (``--no-torch``: ``--peers none``), one workload by default (W1):

  python benches/bench_mlp.py --torch-python /work/peers/torch-venv/bin/python --workload W1

Every other option is compare.py's; see its docstring for what is measured.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402  (found through the line above)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    peers = "none" if "--no-torch" in argv else "torch"
    argv = [a for a in argv if a != "--no-torch"]
    if not any(a.startswith("--workload") for a in argv):
        argv = ["--workloads", "W1", *argv]
    compare.main(["--peers", peers, *argv])


if __name__ == "__main__":
    main()
