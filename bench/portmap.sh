#!/bin/sh
# bench/portmap.sh — published-port throughput: HTTP through a port published
# on 127.0.0.1 versus straight to the container's bridge address, for berth,
# podman and (where an engine runs) docker.
#
# Usage (root):  sh bench/portmap.sh [path/to/berth]          (default bin/berth)
#                ROUNDS=3 DURATION=3s sh bench/portmap.sh bin/berth
#
# What it measures: requests per second (and wrk's median and 99th
# percentile latency) of wrk -t THREADS -c CONNECTIONS -d DURATION --latency
# against one server container per tool, reached two ways in the same run:
#   published  http://127.0.0.1:PORT/...  (the -p 127.0.0.1:PORT:CPORT mapping)
#   direct     http://ADDR:CPORT/...      (ADDR: the container's bridge address)
# under two workloads, both served from the same container (image:
# testimage.App plus a ~0.5 KB /www/index.html, started with
# sh -c 'httpd -p 8081 -h /www && httpd -p 8082 -h /www && exec testapp serve
# -listen :8080 >/dev/null'; the close workload's direct target loads the second
# httpd, on 8082, so the two targets never meet each other's TIME_WAIT sockets):
#   keepalive  testapp serve (Go net/http) GET /hello: wrk's connections carry
#              every request, so this is the cost per packet
#   close      busybox httpd GET /index.html: one connection per request,
#              so this adds the cost per connection (conntrack, NAT set-up)
# The tools:
#   berth   berth --root NEW --run-root NEW --config-dir EMPTY run -d
#             --network bridge -p 127.0.0.1:P1:8080 -p 127.0.0.1:P2:8081 ...
#           with BERTH_BRIDGE, BERTH_BRIDGE_SUBNET and BERTH_NFT_TABLE naming
#           a bridge (bbXXXXXX), a free 10.215.X.0/24 and an nf_tables table
#           (berth_b_XXXXXX) of the benchmark's own, never berth0; the
#           address from `berth inspect` (network.ipAddress) or else the
#           lease file ROOT/network/BRIDGE/leases/ID
#   podman  podman --root NEW --runroot NEW --tmpdir NEW --network-config-dir NEW
#             --storage-driver overlay --cgroup-manager=cgroupfs
#             --events-backend=file --runtime=runc run -d --network=NET -p ...
#           NET being a bridge network of podman's default backend (netavark:
#           iptables DNAT, conmon holding the host port) written into that
#           config dir, on bridge pbXXXXXX and a free 10.216.X.0/24; address
#           from `podman inspect`. Skipped, with the reason, if its
#           networking fails here.
#   docker  docker run -d -p ... on docker's default bridge (the userland
#           proxy serves 127.0.0.1), only where `docker info` reaches an
#           engine; else "docker: skipped (no engine: ...)".
# Every URL must answer 200 with the expected body, then gets one untimed
# second of load. Per round, workload by workload, each tool (order rotating
# from round to round) is loaded on both targets back to back (order
# alternating), so each round's ratio compares runs under the same
# background load. Before each close run the benchmark waits until the host
# holds fewer TIME_WAIT sockets towards that target than a quarter of the
# local port range and conntrack is less than half full: the direct path gets
# no TIME_WAIT reuse (tcp_tw_reuse=2 covers loopback only), so without the
# wait it would run out of ports first.
#
# How to read it: per workload, tool and target the median (min-max) req/s
# over the rounds and the median p50 and p99; then ratios: the median of the
# per-round ratios (each compares two runs made back to back, under the same
# background load), in brackets the lowest and highest of them, then the
# ratio of the medians over all rounds. "berth published/direct = 0.980x
# [0.970-0.990] ... target >= 0.95: met" means the published port keeps 98%
# of the direct throughput; the target, judged on the first figure, is
# berth's (the peers' lines are for comparison). "berth/podman published"
# compares the tools on one path (above 1: berth served more).
# wrk's socket errors or non-2xx answers are printed and fail the test.
# Two cores are shared by wrk, the server and the kernel, so absolute
# figures are low and noisy: trust ratios within a round.
#
# Traffic goes only to 127.0.0.1 and to the containers' addresses on the
# bridges the benchmark created (for docker, its container's address on
# docker's bridge). Everything is created under a fresh temp dir and removed
# at the end, also on failure: the containers, berth's bridge and table,
# podman's bridge and, if none of netavark's iptables chains existed before,
# those netavark added (and the ip nat / ip filter tables if it created them
# and nothing else is in them), docker's containers and image.
#
# It installs wrk, podman and nftables with apt-get when they are missing.
# Knobs: ROUNDS (default 5), DURATION (of one wrk run, default 5s),
# CONNECTIONS (default 8), THREADS (default 1), WORKLOADS (comma-separated
# subset of keepalive,close; default both), TOOLS (comma-separated subset of
# berth,podman,docker; default all).
set -eu

name=portmap.sh
# shellcheck source=bench/lib/common.sh
. "$(dirname "$0")/lib/common.sh"
duration=${DURATION:-5s}
connections=${CONNECTIONS:-8}
threads=${THREADS:-1}
workloads=${WORKLOADS:-keepalive,close}
tools=${TOOLS:-}

BERTH_BENCH=1 exec go test -count=1 -run '^TestPortmapBench$' -v -timeout 60m ./bench/ \
	-args -berth="$berth" -rounds="$rounds" -duration="$duration" -connections="$connections" \
	-threads="$threads" -workloads="$workloads" -tools="$tools"
