//go:build !linux

// Command berth runs ECS-style tasks and services on one Linux host.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "berth: runs on Linux only")
	os.Exit(125)
}
