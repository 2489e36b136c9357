"""benchmarks/autotune_probe.py: the fit check and the later steps timed for each network, with cuDNN's search on and
off, each in its own process (on the CPU here, where both rows time the same thing)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_one_row_per_network_and_search_setting():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/autotune_probe.py"), "--device", "cpu", "--nets",
                           "mobilenet_v3_small", "--size", "32", "--batch", "4", "--steps", "1"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| mobilenet")]
    assert [(net.strip(), search.strip()) for net, search, _, _ in rows] == [("mobilenet_v3_small", "on"),
                                                                            ("mobilenet_v3_small", "off")]
    assert all(float(fit) > 0 and float(step) > 0 for _, _, fit, step in rows)


def test_an_unknown_network_stops_with_its_name():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/autotune_probe.py"), "--device", "cpu", "--nets",
                           "no_such_net", "--size", "32", "--batch", "4", "--steps", "1"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0 and "no_such_net with the search on failed" in done.stderr
