# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (if missing), installs invcomp from this checkout, then runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := experiments/data/portraits/astronaut-face.png
OUTDIR := demo-output

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
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
