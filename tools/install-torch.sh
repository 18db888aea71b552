#!/bin/sh
# Install torch and torchvision into a venv, the build that suits this machine (called by `make demo/test/install`).
#
#   tools/install-torch.sh PYTHON MODE INDEX
#
# MODE auto (the default): a machine with an NVIDIA driver (nvidia-smi, or /proc/driver/nvidia) gets pip's default
#   build, which on Linux x86_64 is the CUDA one; a machine without one gets the CPU-only build from INDEX
#   (PyTorch's CPU index). Where INDEX does not answer within 5 s, pip's default index is used instead, and one
#   line says so.
# MODE cpu: always try INDEX first.  MODE pypi: always pip's default index.
# A venv that already has torch is left as it is (to switch: rm -rf .venv).
set -eu
py=$1 mode=$2 index=$3
if "$py" -c 'import torch' 2>/dev/null; then exit 0; fi
if [ "$mode" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia/version ]; then mode=pypi; else mode=cpu; fi
fi
if [ "$mode" = cpu ]; then
  to=; command -v timeout >/dev/null 2>&1 && to="timeout 8"
  if $to "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$index/torch/" >/dev/null 2>&1; then
    echo "installing the CPU-only torch from $index"
    "$py" -m pip install -q --index-url "$index" torch torchvision
    exit 0
  fi
  echo "note: $index did not answer within 5 s; installing torch from pip's default index instead (on Linux x86_64 the CUDA build, a .venv of about 6-7 GB)"
fi
"$py" -m pip install -q torch torchvision
