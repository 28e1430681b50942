#!/bin/sh
# The demo: what berth does on this host today. It builds a small web image
# from busybox-static (no network needed), loads it, runs it as a task and
# talks to it. Later issues extend it until it runs a supervised demo
# service on a published port.
set -eu
berth=${1:-bin/berth}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "berth version"
"$berth" version
step "build the demo image (busybox httpd) and load it"
go run ./hack/demoimage "$tmp/demo"
"$berth" load -q -i "$tmp/demo"
"$berth" images
step "run a one-off command"
"$berth" run --rm berth.local/demo echo "hello from a berth task"
step "run the web server detached, limited to 64 MiB and half a CPU"
"$berth" rm -f berth-demo >/dev/null 2>&1 || true
"$berth" run -d --name berth-demo -m 64m --cpus 0.5 berth.local/demo
sleep 0.5
"$berth" ps
step "fetch its page from inside the task"
"$berth" exec berth-demo wget -qO- http://127.0.0.1:8080/
"$berth" stats --no-stream berth-demo
"$berth" logs berth-demo
step "stop and remove it"
"$berth" stop berth-demo
"$berth" rm berth-demo
echo
echo "Published ports and supervised services come with the networking and"
echo "service issues; see README.md."
