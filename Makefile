# pxetui: `sudo make run IFACE=eth1` runs it, `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND := noninteractive

# What pxetui itself needs at run time.
RUN_DEBS := ipxe iproute2 ieee-data python3-venv apt-cacher-ng openssl
# What the tests and benches drive: real clients, rival servers and whole PCs.
TEST_DEBS := $(RUN_DEBS) qemu-system-x86 ovmf ipxe-qemu dnsmasq-base kea-dhcp4-server kea-admin \
	tftp-hpa curl udhcpc isc-dhcp-client nginx-light tcpdump tmux busybox-static \
	debian-installer-12-netboot-amd64 xorriso iputils-ping nftables atftp cpio procps ndisc6 radvd \
	apt-utils dpkg-dev

.PHONY: run test lint unit venv deps-run deps-test clean

run: deps-run venv
	$(BIN)/pxetui $(IFACE) $(ARGS)

test: deps-test venv
	$(BIN)/ruff check pxetui tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	PXETUI_TEST_STRICT=$${PXETUI_TEST_STRICT-1} $(BIN)/pytest -ra $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check pxetui tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

deps-run:
	@missing=$$(for p in $(RUN_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi
	@# pxetui runs its own apt-cacher-ng on the lab address; the package's system daemon would
	@# listen on every interface of this machine.
	@if command -v systemctl >/dev/null && systemctl is-enabled apt-cacher-ng >/dev/null 2>&1; then \
	$(SUDO) systemctl disable --now apt-cacher-ng; fi

deps-test:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi
	@# pxetui runs its own apt-cacher-ng on the lab address; the package's system daemon would
	@# listen on every interface of this machine.
	@if command -v systemctl >/dev/null && systemctl is-enabled apt-cacher-ng >/dev/null 2>&1; then \
	$(SUDO) systemctl disable --now apt-cacher-ng; fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
