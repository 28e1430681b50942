# Sourced by the bench/*.sh scripts (set name first): checks root and the
# berth binary, installs the peers through hack/deps.sh's bench profile and
# leaves the shell in the repository with $repo and an absolute $berth.
die() { echo "bench/$name: $*" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
berth=${1:-$repo/bin/berth}
rounds=${ROUNDS:-5}
[ "$(id -u)" = 0 ] || die "needs root (containers, overlay mounts, apt-get): sudo sh bench/$name $berth"
[ -f "$berth" ] && [ -x "$berth" ] || die "$berth: no berth binary there; build it with \`make build\` or pass its path"
berth=$(cd "$(dirname "$berth")" && pwd)/$(basename "$berth")
cd "$repo"
sh hack/deps.sh bench || die "installing the peers (hack/deps.sh bench) failed"
PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || die "go not found on PATH"
