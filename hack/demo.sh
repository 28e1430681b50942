#!/bin/sh
# The demo: what berth does on this host today. Later issues extend it until
# it runs a supervised demo service from a built-in image on a mapped port.
set -eu
berth=${1:-bin/berth}
echo "== berth version"
"$berth" version
echo
echo "== berth --help"
"$berth" --help
