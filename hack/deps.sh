#!/bin/sh
# Installs what building and testing berth needs on a Debian or Ubuntu host:
# Debian packages (a C toolchain for cgo, libseccomp, the test rig's
# docker-registry and busybox-static) and a Go toolchain new enough to fetch
# the one go.mod asks for. Idempotent: installs only what is missing.
#
#   hack/deps.sh build   packages to build berth
#   hack/deps.sh test    plus the test rig's packages
#   hack/deps.sh bench   plus the peers the benchmarks compare against
set -eu

profile=${1:-build}
pkgs="ca-certificates git make gcc libc6-dev pkg-config libseccomp-dev busybox-static iproute2 nftables"
case "$profile" in
build) ;;
test) pkgs="$pkgs docker-registry iptables" ;;
bench) pkgs="$pkgs docker-registry runc podman skopeo umoci hyperfine wrk" ;;
*) echo "hack/deps.sh: unknown profile '$profile' (want build, test or bench)" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
	echo "hack/deps.sh: run as root (sudo) to install packages" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "hack/deps.sh: apt-get not found; berth's scripts support Debian and Ubuntu hosts" >&2
	exit 1
fi

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

updated=""
apt_update() {
	[ -n "$updated" ] && return 0
	apt-get update -qq
	updated=1
}
if [ -n "$missing" ]; then
	echo "hack/deps.sh: installing$missing"
	apt_update
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Go: go.mod names the toolchain; any go >= 1.21 fetches it from the module
# proxy by itself (GOTOOLCHAIN=auto). Find one, or install the distribution's.
PATH=/usr/local/go/bin:$PATH
go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	v=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//')
	major=${v%%.*}
	rest=${v#*.}
	minor=${rest%%.*}
	[ "${major:-0}" -gt 1 ] || { [ "${major:-0}" -eq 1 ] && [ "${minor:-0}" -ge 21 ]; }
}
if ! go_ok; then
	apt_update
	. /etc/os-release
	if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
		# bookworm's golang-go is 1.19, too old to switch toolchains.
		echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/berth-backports.list
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports golang-1.23-go >/dev/null
		ln -sf /usr/lib/go-1.23/bin/go /usr/local/bin/go
	else
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
	fi
	if ! go_ok; then
		echo "hack/deps.sh: no Go >= 1.21 found or installable; install Go from https://go.dev/dl and retry" >&2
		exit 1
	fi
fi
