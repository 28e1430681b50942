#!/bin/sh
# bench/start.sh — side-by-side container start benchmark: berth vs runc vs podman
# (vs docker where an engine runs), without a network and on a bridge.
#
# Usage (root):  sh bench/start.sh [path/to/berth]             (default bin/berth)
#                ROUNDS=3 ITERATIONS=50 sh bench/start.sh bin/berth
#
# What it measures: the wall time of starting a container that runs
# /bin/true, waiting for it and removing it, for each tool, from the same
# image (testimage.Busybox, where /bin/true is a busybox applet symlink):
#   berth             berth --root NEW --run-root NEW --config-dir EMPTY
#                       run --rm --network none IMAGE /bin/true
#                     (with the berth-shim next to the berth binary as its
#                     monitor and container init, as `make build` and
#                     `make install` place it)
#                     (image put there first with `berth load -i` of an OCI archive;
#                     --network none, a private loopback-only namespace, is
#                     explicit since berth's default became bridge)
#   berth-unconfined  the same with --security-opt seccomp=unconfined: runc's
#                     bundle below has no seccomp filter, berth by default
#                     loads Docker's profile, so this row is the like-for-like one
#   runc              runc --root NEW run --bundle B ID, B being the image
#                     unpacked by `umoci unpack` with the config.json of
#                     `runc spec` (args /bin/true, no terminal; new pid, net,
#                     ipc, uts and mount namespaces; no seccomp); runc run
#                     deletes the container when it exits
#   runc-docker       runc run of the same rootfs (its own copy) with the
#                     config.json berth itself generates (runtime/spec:
#                     Docker's capabilities, seccomp profile, masked and
#                     read-only paths, mounts): the bundle equivalent to what
#                     berth starts, so berth/runc-docker is the like-for-like
#                     ratio the 1.3x target is judged on (runc compiles the
#                     profile as Docker ships it; berth a compacted equivalent)
#   podman            podman --root NEW --runroot NEW --tmpdir NEW
#                       --storage-driver overlay --cgroup-manager=cgroupfs
#                       --events-backend=file --runtime=runc
#                       run --rm --network=none --ulimit nofile=CUR:MAX
#                       --ulimit nproc=CUR:MAX IMAGE /bin/true
#                     (image put there with `podman load -i` of a docker archive;
#                     ulimits pinned because podman's defaults exceed the hard
#                     limits here and root lacks CAP_SYS_RESOURCE)
# and the bridged rows, where each start also sets up and tears down the
# container's network (veth pair, address, netns, forwarding rules):
#   berth-bridge      berth's row with --network bridge instead; BERTH_BRIDGE,
#                     BERTH_BRIDGE_SUBNET and BERTH_NFT_TABLE name a bridge
#                     (bbXXXXXX), a free 10.215.X.0/24 and an nf_tables table
#                     (berth_b_XXXXXX) of the benchmark's own, never berth0
#   podman-bridge     podman's row with --network=NET: a bridge network of
#                     podman's default backend (netavark, iptables rules)
#                     written into the benchmark's own --network-config-dir,
#                     on bridge pbXXXXXX and a free 10.216.X.0/24 instead of
#                     podman0's 10.88.0.0/16
#   docker            docker run --rm IMAGE /bin/true on docker's default
#                     bridge network, image put there with `docker load`;
#                     only where `docker info` reaches an engine (else the
#                     row is "skipped", with docker's reason)
# The bridged rows run BRIDGE_ITERATIONS starts a round, spread evenly among
# the others' ITERATIONS, so that a default run stays short.
# Each tool first proves it passes the container's exit code through
# (`sh -c 'exit 3'` must exit 3), then gets two untimed warm-up starts; every
# timed start must exit 0. Per round, each tool starts ITERATIONS times,
# interleaved start by start (berth, runc, podman, berth, ...), with the order
# rotating from round to round. After each start the benchmark waits until no
# process whose command line names that tool's directories is left (berth's
# monitor, podman's conmon and `podman container cleanup`), so no start pays
# for another's background work; how long those outlived the command is
# reported as "background after exit", outside the timed figure.
#
# Then the memory of the per-task helper: MEM_TASKS (default 5) detached tasks
# running `sleep 60` at once, per tool; for berth the monitor (monitorPid of
# `berth inspect`), for podman conmon (`podman inspect` .State.ConmonPid);
# VmRSS from /proc/PID/status and Pss from /proc/PID/smaps_rollup, mean
# (min-max). PSS divides shared pages among the processes mapping them, so it
# falls as more tasks run at once.
#
# How to read it: median (min-max) wall per start, then ratios of medians
# ("berth/runc = 1.20x [1.10-1.30]": berth took 1.2 times as long as runc; in
# brackets the extremes of the ratio of one round's medians, where both ran
# under the same background load) against the targets: berth within 1.3x
# of runc-docker (runc on the equivalent bundle), podman at least 4x berth,
# podman-bridge and docker at least 5x berth-bridge. Finally, whatever berth's state root holds, once every task
# is removed, that it did not hold after the load (leaks).
#
# No traffic leaves the host: berth's containers get a private loopback-only
# network namespace (bridged: the benchmark's bridge), runc's an empty one,
# podman's none (bridged: the benchmark's network), and /bin/true sends
# nothing. Everything is created under a fresh temp dir (keep it apart from
# berth's binary folder: nested dirs put libcontainer on its slow path; the
# test refuses that) and removed at the end, also on failure: berth rm -f,
# podman rm -f, runc delete -f, docker rm -f and rmi; then berth's bridge and
# table, podman's bridge and, if none of netavark's iptables chains existed
# before, the chains netavark added (and the ip nat / ip filter tables if it
# created them and nothing else is in them).
#
# It installs runc, podman and umoci with apt-get when they are missing.
# Knobs: ROUNDS (default 5), ITERATIONS (default 30 starts per tool and
# round), BRIDGE_ITERATIONS (default 10 starts per bridged tool and round),
# MEM_TASKS (default 5; 0 skips), TOOLS (comma-separated subset of
# berth,berth-unconfined,berth-bridge,runc,runc-docker,podman,podman-bridge,docker;
# default all).
set -eu

name=start.sh
# shellcheck source=bench/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
iterations=${ITERATIONS:-30}
bridge_iterations=${BRIDGE_ITERATIONS:-10}
memtasks=${MEM_TASKS:-5}
tools=${TOOLS:-}

BERTH_BENCH=1 exec go test -count=1 -run '^TestStartBench$' -v -timeout 60m ./bench/ \
	-args -berth="$berth" -rounds="$rounds" -iterations="$iterations" -bridge-iterations="$bridge_iterations" -mem-tasks="$memtasks" -tools="$tools"
