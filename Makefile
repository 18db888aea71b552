# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (if missing), installs invcomp from this checkout, then runs.
#
# TORCH picks the torch build; it takes effect when .venv is set up (to switch: rm -rf .venv).
#   pypi (default)  plain pip: on Linux, the CUDA build and its nvidia-* libraries (.venv ~5.8 GB).
#   cpu             torch and torchvision from PyTorch's CPU-only index first (.venv ~1.3 GB);
#                   the install of invcomp then keeps them:  make demo TORCH=cpu
# pypi stays the default even without a GPU: it works wherever PyPI or a mirror of it does (CI
# here cannot reach PyTorch's index), and a missing nvidia-smi does not prove a missing GPU.
# TORCH_INDEX and TORCH_PKGS may be overridden (a mirror of that index; pinned versions).
# torchvision must come from the same index as torch: PyPI's Linux torchvision is built against
# the CUDA torch and does not import beside a +cpu one (operator torchvision::nms does not exist).
TORCH       ?= pypi
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PKGS  ?= torch torchvision
$(if $(filter-out pypi cpu,$(TORCH)),$(error TORCH must be pypi or cpu, not '$(TORCH)'))
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := experiments/data/portraits/astronaut-face.png
OUTDIR := demo-output

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
ifeq ($(TORCH),cpu)
	$(BIN)/python -m pip install -q --index-url $(TORCH_INDEX) $(TORCH_PKGS)
else
	@command -v nvidia-smi >/dev/null || echo "note: no nvidia-smi here; 'rm -rf $(VENV); make demo TORCH=cpu' installs the CPU-only torch (~1.3 GB, not ~5.8 GB)"
endif
	$(BIN)/python -m pip install -q -e '.[test]'
	@# Say which build landed. Where TORCH_INDEX cannot be reached, pip quietly takes torch from
	@# its other indexes (the CUDA build); an existing .venv keeps the torch it has.
	@$(BIN)/python -c 'import torch; c = torch.version.cuda; print("torch", torch.__version__, "CUDA " + c if c else "CPU-only"); \
	  c and "$(TORCH)" == "cpu" and print("warning: TORCH=cpu got a CUDA build: $(TORCH_INDEX) unreachable, or an older $(VENV)")'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p $(OUTDIR)
	$(BIN)/invcomp encode $(DEMO) -o $(OUTDIR)/astronaut-face.ivc --force
	$(BIN)/invcomp decode $(OUTDIR)/astronaut-face.ivc -o $(OUTDIR)/astronaut-face.decoded.png --force
	$(BIN)/invcomp compare $(DEMO) $(OUTDIR)/astronaut-face.decoded.png --bitstream $(OUTDIR)/astronaut-face.ivc
	@echo "wrote $(OUTDIR)/astronaut-face.ivc ($$(wc -c < $(OUTDIR)/astronaut-face.ivc) bytes) and $(OUTDIR)/astronaut-face.decoded.png"

# pytest exits 5 when it collects no tests; that is not a failure of the code.
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

clean:
	rm -rf $(OUTDIR) build *.egg-info
