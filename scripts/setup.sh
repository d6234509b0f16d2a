#!/bin/bash
# Installs what building and testing nasflow needs on a fresh Debian machine. Idempotent:
# only missing packages are installed, and apt's lists are refreshed only when needed.
set -euo pipefail
APT_PACKAGES=(
	clang libbpf-dev bpftool         # BPF build, and bpftool for the kernel cost benchmark
	qemu-system-x86 linux-image-amd64 # the VM: Debian's 6.1 kernel with nfs/nfsd modules and BTF
	nfs-kernel-server rpcbind        # the kernel NFS server inside the VM
	kmod busybox-static fio python3
)
PIP_PACKAGES=(virtme-ng pytest rotel pyyaml) # rotel: the real OTLP collector the tests push through; pyyaml: chart checks

missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1; then
	echo "setup: linux-image-amd64 is installed but /boot has no vmlinuz-*-amd64" >&2
	exit 1
fi
# The guest boots the host's root file system: the kernel image must be readable.
chmod a+r /boot/vmlinuz-* 2>/dev/null || true

pip_missing=()
for p in "${PIP_PACKAGES[@]}"; do
	python3 -m pip show -q "$p" >/dev/null 2>&1 || pip_missing+=("$p")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
	echo "setup: pip installing ${pip_missing[*]}"
	python3 -m pip install -q --root-user-action=ignore "${pip_missing[@]}"
fi
command -v vng >/dev/null || { echo "setup: vng not on PATH after pip install virtme-ng" >&2; exit 1; }
for c in rustfmt clippy; do
	cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
