package regconf

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestLoginLogoutRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "berth") // missing: Login creates it
	path := filepath.Join(dir, "auth.json")

	if err := Login(path, "ghcr.io", "alice", "s3cret:with:colons"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %#o, want %#o", p, got, want)
		}
	}
	m := readJSON(t, path)
	if got := m["auths"].(map[string]any)["ghcr.io"].(map[string]any)["auth"]; got != b64("alice:s3cret:with:colons") {
		t.Errorf("auth = %v", got)
	}

	// Other tools' keys, at the top level and inside entries, survive.
	writeFile(t, path, []byte(`{
		"auths": {
			"ghcr.io": {"auth": "`+b64("alice:old")+`"},
			"quay.io": {"auth": "`+b64("bob:pw")+`", "email": "bob@example.com", "x-future": [1, 2]}
		},
		"credHelpers": {"gcr.io": "gcloud"},
		"HttpHeaders": {"User-Agent": "Docker-Client/1"},
		"psFormat": "table {{.ID}}"
	}`), 0o600)
	for _, host := range []string{"docker.io", "127.0.0.1:5000"} {
		if err := Login(path, host, "carol", "pw-"+host); err != nil {
			t.Fatal(err)
		}
	}
	m = readJSON(t, path)
	want := map[string]any{
		"auths": map[string]any{
			"ghcr.io":                     map[string]any{"auth": b64("alice:old")},
			"quay.io":                     map[string]any{"auth": b64("bob:pw"), "email": "bob@example.com", "x-future": []any{1.0, 2.0}},
			"https://index.docker.io/v1/": map[string]any{"auth": b64("carol:pw-docker.io")},
			"127.0.0.1:5000":              map[string]any{"auth": b64("carol:pw-127.0.0.1:5000")},
		},
		"credHelpers": map[string]any{"gcr.io": "gcloud"},
		"HttpHeaders": map[string]any{"User-Agent": "Docker-Client/1"},
		"psFormat":    "table {{.ID}}",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("after logins:\n got %v\nwant %v", m, want)
	}

	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for host, wantUser := range map[string]string{
		"index.docker.io": "carol", "docker.io": "carol", "registry-1.docker.io": "carol",
		"https://index.docker.io/v1/": "carol", "quay.io": "bob", "QUAY.IO": "bob", "127.0.0.1:5000": "carol",
	} {
		cfg, ok := a.Credentials(host)
		if !ok || cfg.Username != wantUser {
			t.Errorf("Credentials(%q) = %+v, %v; want user %q", host, cfg, ok, wantUser)
		}
	}
	if _, ok := a.Credentials("127.0.0.1:5001"); ok {
		t.Error("credentials for another port")
	}

	// Logout by any spelling of Docker Hub; the rest stays.
	if err := Logout(path, "https://index.docker.io/v1/"); err != nil {
		t.Fatal(err)
	}
	if err := Logout(path, "docker.io"); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("second logout: %v, want ErrNotLoggedIn", err)
	}
	if err := Logout(path, "gcr.io"); !errors.Is(err, ErrNotLoggedIn) || !strings.Contains(err.Error(), "docker-credential-gcloud") {
		t.Errorf("logout of a helper's registry: %v", err)
	}
	m = readJSON(t, path)
	delete(want["auths"].(map[string]any), "https://index.docker.io/v1/")
	if !reflect.DeepEqual(m, want) {
		t.Errorf("after logout:\n got %v\nwant %v", m, want)
	}
	if err := Logout(filepath.Join(t.TempDir(), "none.json"), "ghcr.io"); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("logout without a file: %v", err)
	}
}

func TestLoginReplacesAliases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, path, []byte(`{"auths": {
		"docker.io": {"auth": "`+b64("a:1")+`"},
		"https://index.docker.io/v1/": {"auth": "`+b64("b:2")+`"},
		"http://myreg:5000/v1/": {"auth": "`+b64("c:3")+`"}
	}}`), 0o600)
	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Docker's own key wins over an alias.
	if cfg, _ := a.Credentials("docker.io"); cfg.Username != "b" {
		t.Errorf("hub user = %q, want b", cfg.Username)
	}
	if cfg, _ := a.Credentials("myreg:5000"); cfg.Username != "c" {
		t.Errorf("myreg user = %q, want c (scheme and path ignored)", cfg.Username)
	}
	if err := Login(path, "registry-1.docker.io", "d", "4"); err != nil {
		t.Fatal(err)
	}
	if err := Login(path, "https://MyReg:5000", "e", "5"); err != nil {
		t.Fatal(err)
	}
	auths := readJSON(t, path)["auths"].(map[string]any)
	if len(auths) != 2 || auths[dockerHubKey] == nil || auths["myreg:5000"] == nil {
		t.Errorf("auths = %v, want one key per registry", auths)
	}
}

func TestLoginRefusesBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	for _, tc := range []struct{ host, user, pass string }{
		{"", "u", "p"},
		{"ghcr.io", "", "p"},
		{"ghcr.io", "u:x", "p"},
		{"ghcr.io", "u", ""},
		{"bad host", "u", "p"},
	} {
		if err := Login(path, tc.host, tc.user, tc.pass); err == nil {
			t.Errorf("Login(%q, %q, %q) succeeded", tc.host, tc.user, tc.pass)
		}
	}
	// A corrupt file is reported, never overwritten.
	writeFile(t, path, []byte(`{"auths": {"a.io": {"auth": 1}}}`), 0o600)
	if err := Login(path, "ghcr.io", "u", "p"); err == nil {
		t.Error("Login over a corrupt file succeeded")
	}
	if data, _ := os.ReadFile(path); string(data) != `{"auths": {"a.io": {"auth": 1}}}` {
		t.Errorf("corrupt file rewritten: %s", data)
	}
}

func TestLoadAuthFile(t *testing.T) {
	dir := t.TempDir()
	secret := "hunter2-very-secret"
	for _, tc := range []struct {
		name, json string
		err        string // "" = loads
	}{
		{"empty file", ``, ""},
		{"empty object", `{}`, ""},
		{"null sections", `{"auths": null, "credHelpers": null, "credsStore": null}`, ""},
		{"placeholder entry", `{"auths": {"a.io": {}}, "credsStore": "pass"}`, ""},
		{"username password", `{"auths": {"a.io": {"username": "u", "password": "p"}}}`, ""},
		{"unpadded auth", `{"auths": {"a.io": {"auth": "` + strings.TrimRight(b64("u:pp"), "=") + `"}}}`, ""},
		{"not object", `[]`, "not a JSON object"},
		{"syntax", `{"auths": `, "not a JSON object"},
		{"auths not object", `{"auths": []}`, `auths: must be an object`},
		{"entry not object", `{"auths": {"a.io": "x"}}`, `auths["a.io"]: must be an object`},
		{"auth not string", `{"auths": {"a.io": {"auth": 5}}}`, `auths["a.io"]: auth must be a string`},
		{"auth not base64", `{"auths": {"a.io": {"auth": "!!` + secret + `"}}}`, `auths["a.io"]: "auth" is not valid base64`},
		{"auth no colon", `{"auths": {"a.io": {"auth": "` + b64(secret) + `"}}}`, `base64 of user:password`},
		{"helper not string", `{"credHelpers": {"a.io": 1}}`, `credHelpers["a.io"]: must be a helper name`},
		{"helper path", `{"credHelpers": {"a.io": "../../bin/sh"}}`, `credHelpers["a.io"]: must be a helper name`},
		{"store not string", `{"credsStore": {}}`, `credsStore: must be a helper name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "auth.json")
			writeFile(t, path, []byte(tc.json), 0o600)
			_, err := LoadAuthFile(path)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want it to name %s and say %q", err, path, tc.err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), b64(secret)) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestAuthFilePermissionsWarn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, path, []byte(`{"auths": {"a.io": {"auth": "`+b64("u:p")+`"}}}`), 0o644)
	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := a.Warnings(); len(w) != 1 || !strings.Contains(w[0], "chmod 600") || !strings.Contains(w[0], "0644") {
		t.Errorf("warnings = %q", w)
	}
	if _, ok := a.Credentials("a.io"); !ok {
		t.Error("a group-readable file must still be used")
	}
	// Login leaves it private.
	if err := Login(path, "b.io", "u", "p"); err != nil {
		t.Fatal(err)
	}
	a, err = LoadAuthFile(path)
	if err != nil || len(a.Warnings()) != 0 {
		t.Errorf("after Login: %v, warnings %q", err, a.Warnings())
	}
}

func TestAuthFileHelpers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, path, []byte(`{"credHelpers": {"https://index.docker.io/v1/": "hub", "ecr.example.com": "ecr-login"}, "credsStore": "pass"}`), 0o600)
	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{"docker.io": "hub", "ecr.example.com": "ecr-login", "other.io": "pass"} {
		if got := a.Helper(host); got != want {
			t.Errorf("Helper(%q) = %q, want %q", host, got, want)
		}
	}
}
