#!/bin/sh
# The demo: what berth does on this host today. It builds a small web image
# from busybox-static (no network needed), loads it, runs it as a task with
# a published port and talks to it. Later issues extend it until the web
# server is a supervised service. DEMO_PORT picks the host port (8080).
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
step "run the web server detached on the berth0 bridge, published on 127.0.0.1:${DEMO_PORT:=8080}, limited to 64 MiB and half a CPU"
"$berth" rm -f berth-demo >/dev/null 2>&1 || true
"$berth" run -d --name berth-demo -p "127.0.0.1:$DEMO_PORT:8080" -m 64m --cpus 0.5 berth.local/demo
sleep 0.5
"$berth" ps
"$berth" port berth-demo
step "fetch its page from the host, through the published port"
busybox wget -qO- "http://127.0.0.1:$DEMO_PORT/"
step "and from inside the task"
"$berth" exec berth-demo wget -qO- http://127.0.0.1:8080/
"$berth" stats --no-stream berth-demo
"$berth" logs berth-demo
step "stop and remove it"
"$berth" stop berth-demo
"$berth" rm berth-demo
echo
echo "Supervised services (desired count, restarts) come with the service"
echo "issues; see README.md."
