# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (if missing), installs torch for this machine, then invcomp from this checkout, then runs.
#
# TORCH picks the torch build; it takes effect when .venv is set up (to switch: rm -rf .venv).
#   auto (default)  a machine with an NVIDIA driver gets pip's default build (CUDA on Linux, .venv ~6.5 GB); one
#                   without gets the CPU-only build from PyTorch's CPU index (TORCH_INDEX). Where that index does not
#                   answer within 5 s, pip's default index is used instead, and one line says so.
#   cpu             always try the CPU index first.   pypi   always pip's default index.
# torchvision comes from the same index as torch: PyPI's Linux torchvision is built against the CUDA torch and does
# not import beside a +cpu one (operator torchvision::nms does not exist). See tools/install-torch.sh.
#
# `make demo` installs only what the default mode and `compare` need (the `demo` extra: dlib's face finder and
# recogniser); `make test` adds the `test` extra (the web app, Ray, CompressAI, the bench codecs, the docs).
TORCH       ?= auto
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
$(if $(filter-out auto pypi cpu,$(TORCH)),$(error TORCH must be auto, pypi or cpu, not '$(TORCH)'))
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   := experiments/data/portraits/astronaut-face.png
OUTDIR := demo-output

.PHONY: demo test lint install install-demo clean

# One stamp per extra: the test stamp implies the demo one.
$(VENV)/.installed-demo: setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sh tools/install-torch.sh $(BIN)/python $(TORCH) $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e '.[demo]'
	@$(BIN)/python -c 'import torch; c = torch.version.cuda; print("torch", torch.__version__, "CUDA " + c if c else "CPU-only")'
	touch $@

$(VENV)/.installed: $(VENV)/.installed-demo
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-demo: $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	mkdir -p $(OUTDIR)
	$(BIN)/invcomp encode $(DEMO) -o $(OUTDIR)/astronaut-face.ivc --force
	$(BIN)/invcomp decode $(OUTDIR)/astronaut-face.ivc -o $(OUTDIR)/astronaut-face.decoded.png --force
	$(BIN)/invcomp compare $(DEMO) $(OUTDIR)/astronaut-face.decoded.png --bitstream $(OUTDIR)/astronaut-face.ivc
	@echo "wrote $(OUTDIR)/astronaut-face.ivc ($$(wc -c < $(OUTDIR)/astronaut-face.ivc) bytes) and $(OUTDIR)/astronaut-face.decoded.png"

# pytest exits 5 when it collects no tests; that is not a failure of the code.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# ruff (configured in pyproject.toml) on the whole tree; mypy on the pure layers and the contract.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy invcomp/coding invcomp/formats invcomp/codecs invcomp/service

clean:
	rm -rf $(OUTDIR) build *.egg-info
