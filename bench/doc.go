// Package bench holds side-by-side benchmarks of berth against its peers.
// Each bench/NAME.sh script is one benchmark, run by `make bench` with the
// berth binary as its argument; a script may drive a Go test of this
// package that runs only when BERTH_BENCH=1 (see pull.sh and pull_test.go),
// so `go test ./...` skips it.
package bench
