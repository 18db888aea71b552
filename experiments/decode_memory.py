"""Peak RSS of ``invcomp decode`` to 1, 16 and 64 megapixels (and a 64000x1000 strip), each in a fresh process.

The files are the committed 78-byte fixture ``tests/data/compat/dcgan-crop-square.ivc`` with its declared original
size rewritten (CRC-valid). The growth is measured over a 64x64 decode, whose peak is torch's import.

    python experiments/decode_memory.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.formats import ivc as bitstream  # noqa: E402

SIZES = {"64x64": (64, 64), "1 Mpx (1000x1000)": (1000, 1000), "16 Mpx (4000x4000)": (4000, 4000),
         "64 Mpx (8000x8000)": (8000, 8000), "64 Mpx (64000x1000)": (64000, 1000)}
CHILD = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', 'invcomp.cli', '--threads', '1', "
         "'decode', sys.argv[1], '-o', sys.argv[2], '--force', '--max-pixels', '64000000'], capture_output=True); "
         "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def main() -> None:
    fixture = Path(__file__).resolve().parents[1] / "tests" / "data" / "compat" / "dcgan-crop-square.ivc"
    header, payload, nbits = bitstream.unpack(fixture.read_bytes())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (w, h) in SIZES.items():
            f = Path(tmp, "x.ivc")
            f.write_bytes(bitstream.pack(bitstream.Header(**{**header.__dict__, "width": w, "height": h}), payload, nbits))
            out = subprocess.run([sys.executable, "-c", CHILD, str(f), str(Path(tmp, "x.png"))], capture_output=True,
                                 text=True, check=True).stdout.split()
            rows.append((label, w * h, int(out[-2]), int(out[-1]) / 1024))
    base = rows[0][3]
    print("| output | pixels | exit | peak RSS MiB | over a 64x64 decode, MiB | bytes per pixel | target: 100 MB + 4 B/px |")
    print("|---|---|---|---|---|---|---|")
    for label, px, rc, rss in rows:
        grow = rss - base
        target = (100e6 + 4 * px) / 2**20
        print(f"| {label} | {px:,} | {rc} | {rss:.0f} | {grow:.0f} | {grow * 2**20 / px:.2f} | "
              f"{'met' if grow <= target else 'MISSED'} ({target:.0f} MiB) |")


if __name__ == "__main__":
    main()
