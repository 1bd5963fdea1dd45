# Shared recipe of every layer Makefile (SAM `BuildMethod: makefile`). SAM runs
#   make --makefile layers/<name>/Makefile build-<LogicalId>   with ARTIFACTS_DIR set,
# in a scratch copy of the layer directory. Everything is cross-built for the Lambda runtime
# (python3.12, Amazon Linux 2023, x86_64) from binary wheels only, whatever machine runs the build:
# no Docker, no compiler. pip accepts no manylinux "at most" range, so the manylinux_2_28 (glibc 2.28)
# and manylinux2014 (glibc 2.17, expands to 2010/1) tags are listed explicitly; AL2023 has glibc 2.34.
LAYERS_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
PIP_TARGET_FLAGS := --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
	--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
PIP_INSTALL := $(PYTHON) -m pip install --quiet --no-compile --disable-pip-version-check \
	--upgrade $(PIP_TARGET_FLAGS)
# provided by the Lambda python3.12 runtime: never shipped in a layer
RUNTIME_PROVIDED := boto3 botocore s3transfer jmespath urllib3 python-dateutil six

# $(call build-layer,<requirements file>,<extra trim args>)
define build-layer
	@test -n "$(ARTIFACTS_DIR)" || (echo "ARTIFACTS_DIR is not set (run through sam build)"; exit 2)
	rm -rf "$(ARTIFACTS_DIR)/python"
	mkdir -p "$(ARTIFACTS_DIR)/python"
	$(PIP_INSTALL) --target "$(ARTIFACTS_DIR)/python" -r $(1)
	$(PYTHON) "$(LAYERS_DIR)/trim.py" "$(ARTIFACTS_DIR)/python" $(2)
endef

# $(call compile-layer,<dir>): byte-code for the Lambda runtime. A layer's /opt is read-only, so a
# layer without .pyc has every module it imports compiled from source at each cold start (the
# serving layers: pydantic, Powertools, numpy, onnxruntime, calroute). unchecked-hash: the .pyc is
# used as it is, whatever timestamps the zip keeps (the sources in a layer never change). Only with
# the runtime's Python (3.12: the .pyc magic number must match); any other Python skips it, with a note.
define compile-layer
	@if $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
		$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(1)" >/dev/null \
			|| echo "note: some files of $(1) did not compile"; \
	else echo "note: $(PYTHON) is not Python 3.12: $(1) is shipped without byte-code (slower cold starts)"; fi
endef
