#!/bin/bash
# Installs what building and testing nasflow needs on a fresh Debian machine. Idempotent:
# only missing packages are installed, and apt's lists are refreshed only when needed.
set -euo pipefail
APT_PACKAGES=(
	clang libbpf-dev bpftool         # BPF build, and bpftool for the kernel cost benchmark
	qemu-system-x86 linux-image-amd64 # the VM: Debian's 6.1 kernel with nfs/nfsd modules and BTF
	linux-image-6.12-amd64           # the newest kernel of the VM matrix
	nfs-kernel-server rpcbind        # the kernel NFS server inside the VM
	kmod busybox-static fio python3
	prometheus                       # promtool: the alert rules' checks and unit tests
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
# The oldest kernel of the VM matrix: 5.10 from Debian's bullseye suite (same archive), which
# installs on bookworm and boots over the host's root file system. bullseye's package lists
# go to a private directory so the machine's apt configuration stays as it is.
if ! ls /boot/vmlinuz-5.10.*-amd64 >/dev/null 2>&1; then
	echo "setup: installing Debian bullseye's 5.10 kernel for the VM matrix"
	tmp=$(mktemp -d)
	mkdir -p "$tmp/lists/partial" "$tmp/parts" "$tmp/debs"
	uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"${uri:-http://deb.debian.org/debian}" >"$tmp/parts/bullseye.sources"
	apt_b=(-o Dir::Etc::sourceparts="$tmp/parts" -o Dir::Etc::sourcelist=/dev/null -o Dir::State::Lists="$tmp/lists")
	apt-get -q "${apt_b[@]}" update
	pkg=$(apt-cache "${apt_b[@]}" pkgnames linux-image-5.10.0- | grep -E '^linux-image-5\.10\.0-[0-9]+-amd64$' | sort -V | tail -n 1)
	[ -n "$pkg" ] || { echo "setup: no linux-image-5.10.0-*-amd64 in bullseye" >&2; exit 1; }
	(cd "$tmp/debs" && apt-get -q "${apt_b[@]}" download "$pkg")
	DEBIAN_FRONTEND=noninteractive dpkg -i "$tmp"/debs/*.deb
	rm -rf "$tmp"
fi
for v in 6.1 6.12 5.10; do
	ls /boot/vmlinuz-"$v".*-amd64 >/dev/null 2>&1 || { echo "setup: no /boot/vmlinuz-$v.*-amd64 after installing it" >&2; exit 1; }
done
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
