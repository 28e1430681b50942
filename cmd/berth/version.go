//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/runtime"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	runtime.HostInfo
}

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show berth's version, build and what the host offers (cgroup mode, seccomp)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := versionInfo{
				Version:   version,
				Commit:    buildCommit(),
				GoVersion: goruntime.Version(),
				Platform:  goruntime.GOOS + "/" + goruntime.GOARCH,
				HostInfo:  runtime.Host(),
			}
			switch format {
			case "json":
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			case "", "text":
				seccomp := "not compiled in"
				if v.Seccomp {
					seccomp = "compiled in (libseccomp " + v.SeccompLibVersion + ")"
				}
				_, err := fmt.Fprintf(g.stdout, "berth %s\n  commit:   %s\n  go:       %s %s\n  cgroups:  %s\n  seccomp:  %s\n",
					v.Version, v.Commit, v.GoVersion, v.Platform, v.CgroupMode, seccomp)
				return err
			default:
				return fmt.Errorf("invalid --format %q: want text or json", format)
			}
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return cmd
}
