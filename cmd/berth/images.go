//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/image"
	"github.com/berth-dev/berth/image/regconf"
	"github.com/berth-dev/berth/runtime"
)

// Default locations of berth's configuration, under --config-dir.
const (
	authFileName       = "auth.json"
	registriesFileName = "registries.json"
)

func (g *globalOptions) authFile(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv("BERTH_AUTH_FILE"); v != "" {
		return v
	}
	return filepath.Join(g.configDir, authFileName)
}

func (g *globalOptions) imageStore() (*image.Store, error) {
	hc, err := g.loadHostConfig()
	if err != nil {
		return nil, err
	}
	return image.Open(g.root, image.Options{Logger: g.logger, MaxLayerSize: hc.MaxLayerSize})
}

// autoGC enforces the image GC watermarks after content was added. Failure
// to collect does not fail the command that added content.
func (g *globalOptions) autoGC(cmd *cobra.Command, st *image.Store, added ...*image.Record) {
	hc, err := g.loadHostConfig()
	if err != nil || hc.ImageGC.Disabled {
		return
	}
	// What the command just added is never collected by that command.
	inUse := func(r *image.Record) (bool, string) {
		for _, a := range added {
			if a.ID == r.ID {
				return true, "the command that just added it"
			}
		}
		return g.imageInUse(r)
	}
	rep, err := st.GC(cmd.Context(), hc.ImageGC.GCPolicy, inUse)
	if err != nil {
		g.logger.Warn("image GC failed", "err", err)
		return
	}
	if len(rep.Images) > 0 || rep.Bytes > 0 {
		g.logger.Info("image GC: disk above the high watermark", "usedBefore", rep.UsedPercentBefore, "usedAfter", rep.UsedPercentAfter, "removed", rep.Images, "freed", humanSize(rep.Bytes))
	}
}

// pullOptions builds the endpoints (mirrors, CAs, auth) for a pull from the
// registry config and the auth file.
func (g *globalOptions) pullOptions(authFlag string) (image.PullOptions, error) {
	cfg, err := regconf.LoadConfig(filepath.Join(g.configDir, registriesFileName))
	if err != nil {
		return image.PullOptions{}, err
	}
	kc := regconf.Keychain(g.authFile(authFlag), g.keychains...)
	return image.PullOptions{
		Endpoints: func(ref name.Reference) ([]image.Endpoint, error) {
			eps, err := cfg.Endpoints(ref)
			if err != nil {
				return nil, err
			}
			out := make([]image.Endpoint, 0, len(eps))
			for _, ep := range eps {
				out = append(out, image.Endpoint{
					Ref:    ep.Ref,
					Mirror: ep.Mirror,
					Options: []remote.Option{
						remote.WithTransport(g.ecr.wrap(ep.Transport)),
						remote.WithAuthFromKeychain(kc),
						remote.WithUserAgent("berth/" + version),
					},
				})
			}
			return out, nil
		},
	}, nil
}

func newPullCommand(g *globalOptions) *cobra.Command {
	var platform, authFile string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull [flags] REF",
		Short: "Pull an image from a registry (ECR, Docker Hub, any OCI registry)",
		Args:  exactArgs(1, "pull needs one image reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			o, err := g.pullOptions(authFile)
			if err != nil {
				return err
			}
			if platform != "" {
				if o.Platform, err = image.ParsePlatform(platform); err != nil {
					return err
				}
			}
			pp := newPullProgress(g.stdout, quiet)
			o.Progress = pp.update
			start := time.Now()
			rec, err := st.Pull(cmd.Context(), args[0], o)
			pp.finish(err == nil)
			if err != nil {
				return err
			}
			g.autoGC(cmd, st, rec)
			if quiet {
				fmt.Fprintln(g.stdout, rec.Digest)
				return nil
			}
			fmt.Fprintf(g.stdout, "Digest: %s (%s, %s in %.1fs)\n%s\n", rec.Digest, rec.Platform, humanSize(rec.Size), time.Since(start).Seconds(), rec.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "pick this os/arch[/variant] from a multi-platform image (default: the host's)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the manifest digest")
	cmd.Flags().StringVar(&authFile, "authfile", "", "credentials file (default: $BERTH_AUTH_FILE or CONFIG_DIR/auth.json)")
	return cmd
}

func newImagesCommand(g *globalOptions, use string) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			recs, err := st.List()
			if err != nil {
				return err
			}
			switch {
			case quiet:
				for _, r := range recs {
					fmt.Fprintln(g.stdout, r.ID.Hex[:12])
				}
				return nil
			case format == "json":
				if recs == nil {
					recs = []image.Record{}
				}
				return writeJSON(g.stdout, recs)
			case format != "" && format != "table":
				return fmt.Errorf("invalid --format %q: want table or json", format)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tPLATFORM")
			for _, r := range recs {
				repo, tag := splitName(image.FamiliarName(r.Name))
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", repo, tag, r.ID.Hex[:12], ago(r.Created), humanSize(r.Size), r.Platform)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only image IDs")
	return cmd
}

// splitName splits a familiar name into repository and tag (or digest).
func splitName(n string) (string, string) {
	if i := strings.Index(n, "@"); i >= 0 {
		return n[:i], "<none>"
	}
	if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") {
		return n[:i], n[i+1:]
	}
	return n, "<none>"
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	case d < 60*24*time.Hour:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%d months ago", int(d.Hours()/24/30))
	}
	return fmt.Sprintf("%d years ago", int(d.Hours()/24/365))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// imageInspect is what `berth image inspect` prints for one image.
type imageInspect struct {
	image.Record
	Config   any `json:"config"`
	Manifest any `json:"manifest"`
}

func newImageCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images (inspect, ls, rm, prune, tag)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect REF...",
		Short: "Show an image's record, config and manifest as JSON",
		Args:  minArgs(1, "image inspect needs at least one image"),
		RunE: func(_ *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			var out []imageInspect
			for _, a := range args {
				rec, err := st.Resolve(a)
				if err != nil {
					return err
				}
				cfg, err := st.Config(rec)
				if err != nil {
					return err
				}
				m, err := st.Manifest(rec)
				if err != nil {
					return err
				}
				out = append(out, imageInspect{Record: *rec, Config: cfg, Manifest: m})
			}
			return writeJSON(g.stdout, out)
		},
	}
	var all bool
	prune := &cobra.Command{
		Use:   "prune [-a]",
		Short: "Remove unreferenced blobs and snapshots (-a: and every image no task uses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			rep, err := st.Prune(cmd.Context(), all, g.imageInUse)
			if err != nil {
				return err
			}
			for _, n := range rep.Images {
				fmt.Fprintf(g.stdout, "Untagged: %s\n", image.FamiliarName(n))
			}
			fmt.Fprintf(g.stdout, "Deleted %d blobs and %d snapshots\nTotal reclaimed space: %s\n", rep.Blobs, rep.Snapshots, humanSize(rep.Bytes))
			return nil
		},
	}
	prune.Flags().BoolVarP(&all, "all", "a", false, "also remove every image that no task or service uses")
	cmd.AddCommand(inspect, prune, newImagesCommand(g, "ls"), newRmiCommand(g, "rm"), newTagCommand(g))
	return cmd
}

func newTagCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE TARGET",
		Short: "Give an image another name",
		Args:  exactArgs(2, "tag needs a source image and a target name"),
		RunE: func(_ *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			_, err = st.Tag(args[0], args[1])
			return err
		},
	}
}

func newRmiCommand(g *globalOptions, use string) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   use + " [-f] REF...",
		Short: "Remove images (content is freed by image prune)",
		Args:  minArgs(1, use+" needs at least one image"),
		RunE: func(_ *cobra.Command, args []string) error {
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				rec, err := st.Remove(a, force, g.imageInUse)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(g.stdout, "Untagged: %s\n", image.FamiliarName(rec.Name))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove even if a task uses the image")
	return cmd
}

func newLoadCommand(g *globalOptions) *cobra.Command {
	var input, nameFlag, platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load -i FILE",
		Short: "Load images from an OCI layout directory, OCI archive or docker save archive",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return errors.New("load needs -i FILE (an OCI layout directory, OCI archive or docker save archive)")
			}
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			o := image.LoadOptions{Name: nameFlag}
			if platform != "" {
				if o.Platform, err = image.ParsePlatform(platform); err != nil {
					return err
				}
			}
			pp := newPullProgress(g.stdout, quiet)
			o.Progress = pp.update
			recs, err := st.Load(cmd.Context(), input, o)
			pp.finish(err == nil)
			if err != nil {
				return err
			}
			g.autoGC(cmd, st, recs...)
			for _, r := range recs {
				fmt.Fprintf(g.stdout, "Loaded image: %s\n", image.FamiliarName(r.Name))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "file or directory to load")
	cmd.Flags().StringVar(&nameFlag, "name", "", "name for an archive's only image when the archive names none")
	cmd.Flags().StringVar(&platform, "platform", "", "pick this os/arch[/variant] from multi-platform images")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	return cmd
}

func newSaveCommand(g *globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save -o FILE REF...",
		Short: "Save images to an OCI archive",
		Args:  minArgs(1, "save needs at least one image"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				return errors.New("save needs -o FILE")
			}
			st, err := g.imageStore()
			if err != nil {
				return err
			}
			dir := filepath.Dir(output)
			f, err := os.CreateTemp(dir, ".berth-save-*")
			if err != nil {
				return err
			}
			defer os.Remove(f.Name())
			bw := bufio.NewWriterSize(f, 1<<20)
			if err := st.Save(cmd.Context(), bw, args); err != nil {
				f.Close()
				return err
			}
			if err := bw.Flush(); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Chmod(f.Name(), 0o600); err != nil {
				return err
			}
			return os.Rename(f.Name(), output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive to write")
	return cmd
}

func newLoginCommand(g *globalOptions) *cobra.Command {
	var user, authFile string
	var passStdin, ecrLogin bool
	cmd := &cobra.Command{
		Use:   "login [flags] REGISTRY",
		Short: "Store credentials for a registry (checked against it first)",
		Args:  exactArgs(1, "login needs a registry host"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ecrLogin {
				if user != "" || passStdin {
					return errors.New("login --ecr takes no -u or --password-stdin: the token comes from AWS")
				}
				return g.ecr.login(cmd, args[0])
			}
			if user == "" {
				return errors.New("login needs -u USER")
			}
			if !passStdin {
				return errors.New("login needs --password-stdin (passwords on the command line leak into shell history and ps)")
			}
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<16))
			if err != nil {
				return err
			}
			pass := strings.TrimRight(string(b), "\r\n")
			if pass == "" {
				return errors.New("login: empty password on stdin")
			}
			cfg, err := regconf.LoadConfig(filepath.Join(g.configDir, registriesFileName))
			if err != nil {
				return err
			}
			if err := regconf.CheckLogin(cmd.Context(), args[0], user, pass, cfg); err != nil {
				return err
			}
			if err := regconf.Login(g.authFile(authFile), args[0], user, pass); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().BoolVar(&passStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().BoolVar(&ecrLogin, "ecr", false, "Amazon ECR: fetch a token with the AWS credentials (--aws-profile) and cache it under --run-root")
	cmd.Flags().StringVar(&authFile, "authfile", "", "credentials file (default: $BERTH_AUTH_FILE or CONFIG_DIR/auth.json)")
	return cmd
}

func newLogoutCommand(g *globalOptions) *cobra.Command {
	var authFile string
	cmd := &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Remove stored credentials for a registry",
		Args:  exactArgs(1, "logout needs a registry host"),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := regconf.Logout(g.authFile(authFile), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Removed login credentials for %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&authFile, "authfile", "", "credentials file (default: $BERTH_AUTH_FILE or CONFIG_DIR/auth.json)")
	return cmd
}

// imageInUse protects images that tasks need (services will add theirs).
// The task list is read once per command, not once per image.
func (g *globalOptions) imageInUse(rec *image.Record) (bool, string) {
	if g.usedImages == nil {
		g.usedImages = map[string]string{}
		rt, err := g.runtime()
		var tasks []*runtime.Task
		if err == nil {
			tasks, err = rt.List()
		}
		if err != nil {
			g.usedImagesErr = "an unreadable task list (" + err.Error() + ")"
		}
		for _, t := range tasks {
			for _, c := range t.Containers {
				g.usedImages[c.ImageID] = "task " + t.Name
			}
		}
	}
	if g.usedImagesErr != "" {
		return true, g.usedImagesErr
	}
	by, ok := g.usedImages[rec.ID.String()]
	return ok, by
}

func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s (got %d arguments)", msg, len(args))
		}
		return nil
	}
}

func minArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < n {
			return errors.New(msg)
		}
		return nil
	}
}

func rangeArgs(lo, hi int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return fmt.Errorf("%s (got %d arguments)", msg, len(args))
		}
		return nil
	}
}
