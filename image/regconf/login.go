package regconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrCredentialsRejected is wrapped by CheckLogin's error when the registry
// (or its token server) refuses the user name and password.
var ErrCredentialsRejected = errors.New("credentials rejected")

// CheckLogin verifies user and password against registry host before they
// are saved: it pings the registry, and for a bearer-token registry
// exchanges the credentials for a token (scope registry:catalog:*); then it
// fetches /v2/ with them, as `docker login` does. host may be written as in
// an auth file ("https://index.docker.io/v1/"). The connection follows cfg
// (CAs, insecure, endpoint override); nil cfg means the defaults.
//
// Credentials refused with 401 or 403 give an error wrapping
// [ErrCredentialsRejected] and the registry's own message.
func CheckLogin(ctx context.Context, host, user, pass string, cfg *Config) error {
	if err := checkAuthHost(host); err != nil {
		return err
	}
	if cfg == nil {
		cfg = DefaultConfig()
	}
	reg, err := registryFor(host, cfg)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	auth := &authn.Basic{Username: user, Password: pass}
	rt, err := transport.NewWithContext(ctx, reg, auth, cfg.Transport(), []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return loginError(reg.RegistryStr(), err)
	}
	// The scheme is the one the ping settled on: rt rewrites it for reg.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("login to %s: %w", reg.RegistryStr(), err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return loginError(reg.RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return loginError(reg.RegistryStr(), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return nil
}

func loginError(host string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("login to %s: %w: %w", host, ErrCredentialsRejected, err)
	}
	return fmt.Errorf("login to %s: %w", host, err)
}
