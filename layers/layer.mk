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
