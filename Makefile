# pxetui: `sudo make run IFACE=eth1` runs it, `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND := noninteractive

# What pxetui itself needs at run time.
RUN_DEBS := ipxe iproute2 ieee-data python3-venv squid openssl gpgv debian-archive-keyring mtools
# What the tests and benches drive: real clients, rival servers and whole PCs.
TEST_DEBS := $(RUN_DEBS) dosfstools gnupg qemu-system-x86 ovmf ipxe-qemu dnsmasq-base kea-dhcp4-server kea-admin \
	tftp-hpa curl udhcpc isc-dhcp-client nginx-light tcpdump tmux busybox-static \
	debian-installer-12-netboot-amd64 xorriso iputils-ping nftables atftp cpio procps ndisc6 radvd \
	apt-utils dpkg-dev shim-signed grub-efi-amd64-signed qemu-system-arm qemu-efi-aarch64 debian-installer-12-netboot-arm64

# Packages are installed with their services held back (policy-rc.d exit 101): squid's own
# daemon would otherwise start and listen on every interface of this machine. pxetui runs its
# own copy, bound to the lab address only, when it serves.
APT_INSTALL = held() { made=; policy=/usr/sbin/policy-rc.d; \
	if [ ! -e $$policy ]; then printf '\043!/bin/sh\nexit 101\n' | $(SUDO) tee $$policy >/dev/null \
	&& $(SUDO) chmod 755 $$policy && made=1; fi; \
	$(SUDO) apt-get install -y -qq --no-install-recommends "$$@"; rc=$$?; \
	if [ -n "$$made" ]; then $(SUDO) rm -f $$policy; fi; return $$rc; }; held

.PHONY: run install test lint unit venv deps-run deps-test clean no-system-proxy

run: deps-run venv install
	$(BIN)/pxetui $(IFACE) $(ARGS)

# `sudo pxetui` after `make run`: sudo's secure_path has /usr/local/bin, not this venv. The link
# is made once; a dangling one (its venv is gone) is replaced; anything else already there is
# not pxetui's link to this venv and is left alone, with a message.
PREFIX ?= /usr/local
ENTRY := $(CURDIR)/$(BIN)/pxetui
install: venv
	@link="$(PREFIX)/bin/pxetui"; \
	if [ "$$(readlink "$$link")" = "$(ENTRY)" ]; then exit 0; fi; \
	if [ -e "$$link" ]; then echo "$$link is not a link to $(ENTRY): left alone, so \`sudo pxetui\`" \
	"runs that one (remove it and run \`sudo make install\`, or run $(ENTRY))" >&2; exit 0; fi; \
	sudo=; if [ -d "$(PREFIX)/bin" ] && [ ! -w "$(PREFIX)/bin" ]; then sudo="$(SUDO)"; fi; \
	$$sudo mkdir -p "$(PREFIX)/bin" && $$sudo ln -sfn "$(ENTRY)" "$$link" && echo "linked $$link -> $(ENTRY)"

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
	$(SUDO) apt-get update -qq && $(APT_INSTALL) $$missing; fi
	@$(MAKE) -s no-system-proxy

deps-test:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	$(SUDO) apt-get update -qq && $(APT_INSTALL) $$missing; fi
	@$(MAKE) -s no-system-proxy

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache

# A system squid (or apt-cacher-ng, which pxetui used before) daemon, installed before this
# Makefile held services back or started by hand, is stopped and disabled: it would be an open
# proxy on this machine's own network, started again at every boot.
no-system-proxy:
	@if [ -x /etc/init.d/squid ] && pgrep -f '^/usr/sbin/squid (--foreground -sYC|-YC -f /etc/squid/squid.conf)' >/dev/null; then \
	$(SUDO) /etc/init.d/squid stop >/dev/null 2>&1 || true; fi
	@if command -v systemctl >/dev/null && systemctl is-enabled squid >/dev/null 2>&1; then \
	$(SUDO) systemctl disable --now squid >/dev/null 2>&1 || true; fi
	@if command -v update-rc.d >/dev/null && [ -e /etc/init.d/squid ]; then \
	$(SUDO) update-rc.d squid disable >/dev/null 2>&1 || true; fi
	@if [ -x /etc/init.d/apt-cacher-ng ] && pgrep -f '^/usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng' >/dev/null; then \
	$(SUDO) /etc/init.d/apt-cacher-ng stop >/dev/null 2>&1 || true; fi
	@if command -v systemctl >/dev/null && systemctl is-enabled apt-cacher-ng >/dev/null 2>&1; then \
	$(SUDO) systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true; fi
	@if command -v update-rc.d >/dev/null && [ -e /etc/init.d/apt-cacher-ng ]; then \
	$(SUDO) update-rc.d apt-cacher-ng disable >/dev/null 2>&1 || true; fi
