//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/image/ecr"
	"github.com/berth-dev/berth/image/regconf"
)

// ecrTokenDir is where ECR tokens are cached, under --run-root.
const ecrTokenDir = "ecr-tokens"

// ecrAuth is the CLI's Amazon ECR authentication: the --aws-profile flag,
// the keychain that follows the auth file and credential helpers, and the
// transport wrapper that replaces tokens the registry refuses. The client
// behind them is made on first use, after the flags are parsed.
type ecrAuth struct {
	g       *globalOptions
	profile string

	once   sync.Once
	client *ecr.Client
}

var _ authn.ContextKeychain = (*ecrAuth)(nil)

// newECRAuth registers --aws-profile on root and appends the ECR keychain
// to g.keychains.
func newECRAuth(g *globalOptions, root *cobra.Command) *ecrAuth {
	e := &ecrAuth{g: g}
	root.PersistentFlags().StringVar(&e.profile, "aws-profile", "", "AWS profile whose credentials fetch Amazon ECR tokens (default: $AWS_PROFILE, else the SDK's default chain)")
	g.keychains = append(g.keychains, e)
	return e
}

func (e *ecrAuth) get() *ecr.Client {
	e.once.Do(func() {
		e.client = ecr.New(ecr.Options{
			CacheDir: filepath.Join(e.g.runRoot, ecrTokenDir),
			Profile:  e.profile,
			Logger:   e.g.logger,
		})
	})
	return e.client
}

func (e *ecrAuth) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return e.ResolveContext(context.Background(), target)
}

func (e *ecrAuth) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	if _, err := ecr.ParseHost(target.RegistryStr()); errors.Is(err, ecr.ErrNotECR) {
		// Not ECR: don't build the client (nor touch the run root).
		return authn.Anonymous, nil
	}
	return authn.Resolve(ctx, e.get().Keychain(), target)
}

// wrap returns rt wrapped so that ECR tokens the registry refuses are
// replaced and the request retried once (see ecr.Client.Transport).
func (e *ecrAuth) wrap(rt http.RoundTripper) http.RoundTripper {
	if e == nil {
		return rt
	}
	return &lazyECRTransport{e: e, inner: rt}
}

// lazyECRTransport builds the ECR client only when a refusal from an ECR
// registry needs it.
type lazyECRTransport struct {
	e     *ecrAuth
	inner http.RoundTripper

	once sync.Once
	rt   http.RoundTripper
}

func (l *lazyECRTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, err := ecr.ParseHost(req.URL.Host); err != nil {
		return l.inner.RoundTrip(req)
	}
	l.once.Do(func() { l.rt = l.e.get().Transport(l.inner) })
	return l.rt.RoundTrip(req)
}

func (l *lazyECRTransport) CloseIdleConnections() {
	if ci, ok := l.inner.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// login is `berth login --ecr REGISTRY`: fetch a new token from AWS, check
// it against the registry, cache it for every berth process.
func (e *ecrAuth) login(cmd *cobra.Command, host string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://"), "/")
	if ecr.IsPublic(host) {
		return fmt.Errorf("login --ecr %s: Amazon ECR Public needs no login; berth pulls its images anonymously", host)
	}
	if _, err := ecr.ParseHost(host); err != nil {
		if errors.Is(err, ecr.ErrNotECR) {
			return fmt.Errorf("login --ecr: %q is not an Amazon ECR registry (ACCOUNT.dkr.ecr.REGION.amazonaws.com); for other registries use -u USER --password-stdin", host)
		}
		return fmt.Errorf("login --ecr: %w", err)
	}
	cfg, err := regconf.LoadConfig(filepath.Join(e.g.configDir, registriesFileName))
	if err != nil {
		return err
	}
	tok, err := e.get().Login(cmd.Context(), host, func(ctx context.Context, tok *ecr.Token) error {
		if err := regconf.CheckLogin(ctx, host, tok.Username, tok.Password, cfg); err != nil {
			return fmt.Errorf("%w (ECR token fetched with credentials from %s)", err, tok.Source)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.g.stdout, "Login Succeeded: ECR token for %s cached until %s\n", host, tok.ExpiresAt.Local().Format(time.RFC3339))
	return nil
}
