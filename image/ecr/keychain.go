package ecr

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Keychain returns a keychain that authenticates to private ECR registries
// with the client's tokens. For any other registry, ECR Public included, it
// returns authn.Anonymous, leaving the registry to the keychains after it.
//
// For an ECR registry it never returns Anonymous: when no token can be had
// it returns the error (no credentials and where it looked, credentials
// rejected with AWS's words, token expired), which ends the pull.
//
// Resolving fetches the token (or finds it cached), so errors surface
// before the registry is contacted. The authenticator asks the client again
// for every request, so a long pull moves to a new token when the old one
// nears its expiry.
func (c *Client) Keychain() authn.Keychain { return keychain{c} }

type keychain struct{ c *Client }

var _ authn.ContextKeychain = keychain{}

func (k keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

func (k keychain) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	reg, err := ParseHost(target.RegistryStr())
	if errors.Is(err, ErrNotECR) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := k.c.token(ctx, reg); err != nil {
		return nil, err
	}
	return &authenticator{c: k.c, reg: reg}, nil
}

// authenticator hands out the registry's current token.
type authenticator struct {
	c   *Client
	reg Registry
}

var _ authn.ContextAuthenticator = (*authenticator)(nil)

func (a *authenticator) Authorization() (*authn.AuthConfig, error) {
	return a.AuthorizationContext(context.Background())
}

func (a *authenticator) AuthorizationContext(ctx context.Context) (*authn.AuthConfig, error) {
	t, err := a.c.token(ctx, a.reg)
	if err != nil {
		return nil, err
	}
	return &authn.AuthConfig{Username: t.Username, Password: t.Password}, nil
}
