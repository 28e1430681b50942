package ecr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/store"
)

// RefreshMargin is how long before its expiry a token is replaced. A
// token's whole life is 12 hours; one that lives less than twice the margin
// is replaced when half of its life is left instead.
const RefreshMargin = 15 * time.Minute

// maxCacheFile bounds a token cache file read from disk.
const maxCacheFile = 64 << 10

// Token is an ECR authorization token: basic-auth credentials for one
// registry until ExpiresAt.
type Token struct {
	RegistryID string    `json:"registryID"`
	Region     string    `json:"region"`
	Username   string    `json:"username"` // always "AWS" in practice
	Password   string    `json:"password"`
	ExpiresAt  time.Time `json:"expiresAt"`
	FetchedAt  time.Time `json:"fetchedAt"`
	// ProxyEndpoint is the registry URL AWS returned with the token.
	ProxyEndpoint string `json:"proxyEndpoint,omitempty"`
	// Source describes the AWS credentials the token was fetched with
	// (never the credentials themselves), for error messages.
	Source string `json:"source,omitempty"`
}

// margin is how long before ExpiresAt the token stops being used.
func (t *Token) margin() time.Duration {
	life := t.ExpiresAt.Sub(t.FetchedAt)
	if t.FetchedAt.IsZero() || life <= 0 || life >= 2*RefreshMargin {
		return RefreshMargin
	}
	return life / 2
}

// Fresh reports whether the token may still be used at now: it is
// complete and more than its margin away from expiry.
func (t *Token) Fresh(now time.Time) bool {
	return t != nil && t.Username != "" && t.Password != "" &&
		now.Before(t.ExpiresAt.Add(-t.margin()))
}

// cache holds tokens in files DIR/<registryID>.<region>.json, mode 0600,
// replaced atomically: every berth process on the host (CLI and daemon)
// shares them. The zero value (no directory) caches nothing.
type cache struct {
	dir string
}

func (c cache) path(key string) string { return filepath.Join(c.dir, key+".json") }

// load returns the cached token for key; nil, nil when there is none.
// A file that does not parse, or holds a token for another registry, is
// treated as absent: it is replaced on the next store.
func (c cache) load(key string) (*Token, error) {
	if c.dir == "" {
		return nil, nil
	}
	f, err := os.Open(c.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ECR token cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return nil, fmt.Errorf("ECR token cache: %w", err)
	}
	if len(b) > maxCacheFile {
		return nil, nil
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, nil
	}
	if t.RegistryID+"."+t.Region != key {
		return nil, nil
	}
	return &t, nil
}

// store writes t for key atomically with mode 0600, creating the directory
// (mode 0700) if needed.
func (c cache) store(key string, t *Token) error {
	if c.dir == "" {
		return nil
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("ECR token cache: %w", err)
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(c.path(key), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("ECR token cache: %w", err)
	}
	return nil
}

// remove deletes the cached token for key, if any.
func (c cache) remove(key string) error {
	if c.dir == "" {
		return nil
	}
	if err := os.Remove(c.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ECR token cache: %w", err)
	}
	return nil
}
