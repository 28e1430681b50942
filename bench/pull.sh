#!/bin/sh
# bench/pull.sh — side-by-side pull benchmark: berth vs podman vs skopeo+umoci.
#
# Usage (root):  sh bench/pull.sh [path/to/berth]      (default bin/berth)
#                ROUNDS=9 sh bench/pull.sh bin/berth   (default 5 rounds)
#
# What it measures: a cold pull *and unpack* of one generated 5-layer image
# (~207 MB compressed: incompressible random blobs, text, ~15,000 small files,
# hard links and symlinks, random blobs; built with testimage.Random in about
# 3 s, so it is generated afresh every run) served by Debian's docker-registry
# on 127.0.0.1:<free port> over plain HTTP. Per round, in an order that
# rotates from round to round, each tool starts from fresh, empty directories:
#   berth         berth pull -q --root NEW --run-root NEW --config-dir EMPTY REF
#   podman        podman --root NEW --runroot NEW --tmpdir NEW
#                   --storage-driver overlay --cgroup-manager=cgroupfs
#                   --events-backend=file --runtime=runc pull -q --tls-verify=false REF
#   skopeo+umoci  skopeo copy -q docker://REF oci:NEW/layout:bench, then
#                 umoci unpack --image NEW/layout:bench NEW/bundle
#                 (timed together, and each part)
# wall is the command's elapsed time; cpu is user+sys from the rusage of the
# waited-for child, which includes every descendant it waited for (podman's
# helpers included; a daemonised grandchild would not be, and none is
# involved in a pull). After each run the unpacked tree is checked against
# the image — every path under /data/layerN with its type, mode, size,
# content digest, symlink target and shared hard-link inode — and a tool
# that fails or unpacks wrongly is reported as FAILED, never timed.
#
# How to read it: per tool, median wall and CPU seconds over the rounds with
# (min-max), and for skopeo+umoci each part; then ratios of medians against
# berth ("podman/berth wall = 2.4x [1.9-2.7]": podman took 2.4 times as long;
# above 1 means berth is faster; in brackets the extremes of the ratio within
# one round, where both tools ran under the same background load). The
# machine is shared and noisy: trust medians and ratios, not single rounds.
#
# Fairness: nothing is dropped from the page cache (we can't do that fairly),
# so every tool reads the registry's blobs warm alike. `sync` runs before
# every timed command so no tool pays for an earlier one's writeback; a
# tool's own writeback is inside its time only if it syncs (berth syncs the
# filesystem before publishing a snapshot, for crash safety; podman
# fdatasyncs only its metadata, skopeo its blobs, umoci nothing).
# Unpacked trees are kept until the end (~1.5 GB a round, checked up front)
# because on ext4 without a journal creating files right after thousands were
# deleted is several times slower, which would penalise whichever tool ran
# after a deletion; anything else on the machine that deletes many files (a
# fuzzer, a test suite) still adds noise.
#
# It installs docker-registry, podman, skopeo and umoci with apt-get when they
# are missing. Knobs: ROUNDS (default 5); `go test ./bench/ -args -h` lists
# the test's flags (-layer-size, -small-files-size).
set -eu

name=pull.sh
# shellcheck source=bench/lib/common.sh
. "$(dirname "$0")/lib/common.sh"

BERTH_BENCH=1 exec go test -count=1 -run '^TestPullBench$' -v -timeout 60m ./bench/ \
	-args -berth="$berth" -rounds="$rounds"
