# The two commands a newcomer needs: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-all clean

$(PY):
	bash scripts/install.sh --dev

install: $(PY)

demo: $(PY)
	$(VENV)/bin/ltbench run --preset fmnist-lt-quick

test: $(PY)
	$(PY) -m pytest -q

test-all: $(PY)
	$(PY) -m pytest -q -m ""

clean:
	rm -rf results/demo reports/demo.html
