package regconf

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berth-dev/berth/internal/store"
)

// DefaultAuthFile is where berth keeps registry credentials unless the CLI
// is given --authfile or BERTH_AUTH_FILE.
const DefaultAuthFile = "/etc/berth/auth.json"

// dockerHubKey is the auths key Docker uses for Docker Hub.
const dockerHubKey = authn.DefaultAuthKey // "https://index.docker.io/v1/"

const maxAuthFileSize = 4 << 20

// ErrNotLoggedIn is returned by Logout when the auth file holds no
// credentials for the registry.
var ErrNotLoggedIn = errors.New("not logged in")

// AuthFile is an auth file in Docker's config.json format:
//
//	{
//	  "auths": {"registry.example.com": {"auth": "base64(user:password)"}},
//	  "credHelpers": {"123456789012.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"},
//	  "credsStore": "pass"
//	}
//
// An auths entry may instead hold "username" and "password",
// "identitytoken" (an OAuth refresh token) or "registrytoken" (a bearer
// token). Keys may be written as Docker does ("https://index.docker.io/v1/",
// "http://host:5000", "host:5000/v1/"): the scheme and path are ignored, and
// docker.io, index.docker.io, registry-1.docker.io and
// https://index.docker.io/v1/ all name Docker Hub. Other top-level keys are
// kept as they are when berth rewrites the file.
type AuthFile struct {
	path        string
	top         map[string]json.RawMessage
	auths       map[string]json.RawMessage // keys as written
	creds       map[string]authn.AuthConfig
	credHelpers map[string]string // by canonical host
	credsStore  string
	warnings    []string
}

// LoadAuthFile reads the auth file at path. A missing file is an empty auth
// file, not an error; one that is not valid is an error naming the file and
// the key. A file that group or others may read or write is loaded anyway
// (as Docker and Podman do) with a warning in [AuthFile.Warnings].
func LoadAuthFile(path string) (*AuthFile, error) {
	a := &AuthFile{
		path:        path,
		top:         map[string]json.RawMessage{},
		auths:       map[string]json.RawMessage{},
		creds:       map[string]authn.AuthConfig{},
		credHelpers: map[string]string{},
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		a.warnings = append(a.warnings, fmt.Sprintf(
			"auth file %s holds credentials and is accessible to group or others (mode %#o); run: chmod 600 %s", path, perm, path))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAuthFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	if len(data) > maxAuthFileSize {
		return nil, fmt.Errorf("auth file %s: larger than %d bytes", path, maxAuthFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return a, nil // an empty file, as some tools create it
	}
	if err := a.parse(data); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *AuthFile) parse(data []byte) error {
	fail := func(key, format string, args ...any) error {
		return &ConfigError{File: a.path, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	top, err := object(data)
	if err != nil {
		return fail("", "not a JSON object: %v", jsonMsg(err))
	}
	a.top = top
	if raw, ok := top["auths"]; ok && !isNull(raw) {
		auths, err := object(raw)
		if err != nil {
			return fail("auths", "must be an object of registry → credentials")
		}
		a.auths = auths
		// The key written the way berth writes it wins over aliases.
		keys := sortedKeys(auths)
		for _, k := range keys {
			if authKey(k) != k {
				continue
			}
			if err := a.addCreds(k, auths[k]); err != nil {
				return fail(keyPath("auths", k), "%v", err)
			}
		}
		for _, k := range keys {
			if authKey(k) == k {
				continue
			}
			if err := a.addCreds(k, auths[k]); err != nil {
				return fail(keyPath("auths", k), "%v", err)
			}
		}
	}
	if raw, ok := top["credHelpers"]; ok && !isNull(raw) {
		helpers, err := object(raw)
		if err != nil {
			return fail("credHelpers", "must be an object of registry → helper name")
		}
		for _, k := range sortedKeys(helpers) {
			var h string
			if !isString(helpers[k]) || json.Unmarshal(helpers[k], &h) != nil || checkHelperName(h) != nil {
				return fail(keyPath("credHelpers", k), "must be a helper name (docker-credential-NAME)")
			}
			host := authHost(k)
			if _, dup := a.credHelpers[host]; !dup {
				a.credHelpers[host] = h
			}
		}
	}
	if raw, ok := top["credsStore"]; ok && !isNull(raw) {
		var h string
		if !isString(raw) || json.Unmarshal(raw, &h) != nil || (h != "" && checkHelperName(h) != nil) {
			return fail("credsStore", "must be a helper name (docker-credential-NAME)")
		}
		a.credsStore = h
	}
	return nil
}

// authEntry is one "auths" value; other fields (email, serveraddress) are
// ignored as Docker ignores them.
type authEntry struct {
	Auth          *string `json:"auth"`
	Username      *string `json:"username"`
	Password      *string `json:"password"`
	IdentityToken *string `json:"identitytoken"`
	RegistryToken *string `json:"registrytoken"`
}

// addCreds records the credentials of auths key k unless an entry for the
// same registry came first. Empty entries ({}, left by Docker when a
// credsStore holds the secret) are not credentials.
func (a *AuthFile) addCreds(k string, raw json.RawMessage) error {
	if _, err := object(raw); err != nil {
		return errors.New("must be an object")
	}
	var e authEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		// The message names a field and a type, never a value.
		return fmt.Errorf("%v", jsonMsg(err))
	}
	var cfg authn.AuthConfig
	if e.Auth != nil && *e.Auth != "" {
		user, pass, err := decodeAuth(*e.Auth)
		if err != nil {
			return err
		}
		cfg.Username, cfg.Password = user, pass
	} else {
		cfg.Username, cfg.Password = deref(e.Username), deref(e.Password)
	}
	cfg.IdentityToken, cfg.RegistryToken = deref(e.IdentityToken), deref(e.RegistryToken)
	if cfg == (authn.AuthConfig{}) {
		return nil
	}
	host := authHost(k)
	if _, ok := a.creds[host]; !ok {
		a.creds[host] = cfg
	}
	return nil
}

func decodeAuth(s string) (user, pass string, err error) {
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return "", "", errors.New(`"auth" is not valid base64`)
		}
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok || user == "" {
		return "", "", errors.New(`"auth" must be base64 of user:password`)
	}
	return user, pass, nil
}

// Path is the file the auth file was loaded from.
func (a *AuthFile) Path() string { return a.path }

// Warnings lists problems that did not stop the file from loading (today:
// a mode that lets group or others read it).
func (a *AuthFile) Warnings() []string { return a.warnings }

// Credentials returns the credentials stored for a registry host, if any.
func (a *AuthFile) Credentials(host string) (authn.AuthConfig, bool) {
	cfg, ok := a.creds[authHost(host)]
	return cfg, ok
}

// Helper returns the credential helper that holds the registry's
// credentials: its credHelpers entry, else credsStore, else "".
func (a *AuthFile) Helper(host string) string {
	if h, ok := a.credHelpers[authHost(host)]; ok {
		return h
	}
	return a.credsStore
}

// Login stores user and password for registry host in the auth file at path
// ("auth": base64(user:password)), replacing what was stored for that
// registry under any of its spellings and keeping every other entry and key.
// The file is written atomically with mode 0600; a missing directory is
// created with mode 0700. Concurrent logins to one file: the last one wins.
func Login(path, host, user, pass string) error {
	if err := checkAuthHost(host); err != nil {
		return err
	}
	if user == "" || strings.ContainsAny(user, ":\n") {
		return fmt.Errorf("login: user name %q: must be non-empty and hold no ':' or newline", user)
	}
	if pass == "" {
		return errors.New("login: empty password")
	}
	a, err := LoadAuthFile(path)
	if err != nil {
		return err
	}
	a.removeHost(host)
	entry, err := json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))})
	if err != nil {
		return err
	}
	a.auths[authKey(host)] = entry
	return a.write()
}

// Logout removes the credentials stored for registry host (under any of its
// spellings) from the auth file at path. It returns an error wrapping
// [ErrNotLoggedIn] when there were none. It does not erase credentials held
// by a credential helper.
func Logout(path, host string) error {
	if err := checkAuthHost(host); err != nil {
		return err
	}
	a, err := LoadAuthFile(path)
	if err != nil {
		return err
	}
	if !a.removeHost(host) {
		msg := fmt.Errorf("%w to %s (no entry in %s)", ErrNotLoggedIn, authHost(host), path)
		if h := a.Helper(host); h != "" {
			msg = fmt.Errorf("%w; its credentials come from credential helper docker-credential-%s, which berth does not change", msg, h)
		}
		return msg
	}
	return a.write()
}

// removeHost deletes every auths key naming host; it reports whether any did.
func (a *AuthFile) removeHost(host string) bool {
	want := authHost(host)
	removed := false
	for k := range a.auths {
		if authHost(k) == want {
			delete(a.auths, k)
			removed = true
		}
	}
	delete(a.creds, want)
	return removed
}

// write saves the auth file atomically, mode 0600.
func (a *AuthFile) write() error {
	auths, err := json.Marshal(a.auths)
	if err != nil {
		return err
	}
	a.top["auths"] = auths
	data, err := json.MarshalIndent(a.top, "", "\t")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := os.MkdirAll(filepath.Dir(a.path), 0o700); err != nil {
		return fmt.Errorf("auth file: %w", err)
	}
	if err := store.WriteFileAtomic(a.path, data, 0o600); err != nil {
		return fmt.Errorf("auth file: %w", err)
	}
	return nil
}

// authHost turns an auths key or a registry name into the registry host it
// names: scheme and path dropped, lower case, Docker Hub's aliases as
// index.docker.io.
func authHost(s string) string {
	h := hostOf(s)
	if h == "" {
		return ""
	}
	return canonicalRegistry(h)
}

// authKey is the auths key berth writes for a registry: Docker's for Docker
// Hub, host[:port] otherwise.
func authKey(s string) string {
	h := authHost(s)
	if h == name.DefaultRegistry {
		return dockerHubKey
	}
	return h
}

func checkAuthHost(host string) error {
	h := authHost(host)
	if h == "" {
		return errors.New("empty registry host")
	}
	if err := checkHostPort(h); err != nil {
		return fmt.Errorf("registry %q: %w", host, err)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// jsonMsg renders a JSON decoding error without the input's content.
func jsonMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s must be a %s, not a %s", te.Field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	return err.Error()
}
