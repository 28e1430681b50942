// Package ecrtest is a fake of Amazon ECR's API for tests: an HTTP server
// on 127.0.0.1 that speaks the awsJson1.1 protocol of
// GetAuthorizationToken, checks the request's SigV4 signature against the
// one access key it knows, and hands out tokens for user AWS.
package ecrtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Target is the X-Amz-Target of GetAuthorizationToken.
const Target = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"

// ContentType is the awsJson1.1 content type.
const ContentType = "application/x-amz-json-1.1"

// Server is a running fake. Its setters may be called while it serves.
type Server struct {
	// URL is the endpoint: "http://127.0.0.1:PORT", for AWS_ENDPOINT_URL_ECR.
	URL string

	mu        sync.Mutex
	accessKey string
	secretKey string
	password  string
	lifetime  time.Duration
	failure   *apiFailure
	calls     int
	ok        int
	regions   []string
	keys      []string
}

type apiFailure struct {
	status        int
	code, message string
}

// Start runs a fake that accepts requests signed with accessKey and
// secretKey and answers with tokens for user AWS and password, valid for
// 12 hours. It stops when the test ends.
func Start(t testing.TB, accessKey, secretKey, password string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ecrtest: %v", err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), accessKey: accessKey, secretKey: secretKey, password: password, lifetime: 12 * time.Hour}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// SetCredentials changes the access key (and its secret) the fake accepts.
func (s *Server) SetCredentials(accessKey, secretKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessKey, s.secretKey = accessKey, secretKey
}

// SetPassword changes the password of the tokens handed out from now on.
func (s *Server) SetPassword(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.password = p
}

// SetLifetime changes how long new tokens are valid.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// Fail makes every request that is correctly signed fail with an AWS error
// (e.g. 400 AccessDeniedException); status 0 makes them succeed again.
func (s *Server) Fail(status int, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		s.failure = nil
		return
	}
	s.failure = &apiFailure{status, code, message}
}

// Calls returns how many GetAuthorizationToken requests arrived.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Tokens returns how many tokens were handed out.
func (s *Server) Tokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

// Regions returns the region of every request's signature, in order.
func (s *Server) Regions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.regions...)
}

// AccessKeys returns the access key of every request's signature, in order.
func (s *Server) AccessKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeError(w, http.StatusNotFound, "UnknownOperationException", "")
		return
	}
	if got := r.Header.Get("X-Amz-Target"); got != Target {
		writeError(w, http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("X-Amz-Target %q: this fake serves only %s", got, Target))
		return
	}
	s.calls++
	if got := r.Header.Get("Content-Type"); got != ContentType {
		writeError(w, http.StatusBadRequest, "SerializationException", fmt.Sprintf("Content-Type %q, want %s", got, ContentType))
		return
	}
	sig, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token ("+err.Error()+")")
		return
	}
	s.regions = append(s.regions, sig.region)
	s.keys = append(s.keys, sig.accessKey)
	if sig.accessKey != s.accessKey {
		writeError(w, http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	}
	if sig.service != "ecr" {
		writeError(w, http.StatusBadRequest, "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to correct service: 'ecr', not %q.", sig.service))
		return
	}
	if want := sig.sign(r, body, s.secretKey); !hmac.Equal([]byte(want), []byte(sig.signature)) {
		writeError(w, http.StatusBadRequest, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
		return
	}
	var in struct {
		RegistryIDs []string `json:"registryIds"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	if f := s.failure; f != nil {
		writeError(w, f.status, f.code, f.message)
		return
	}
	s.ok++
	token := base64.StdEncoding.EncodeToString([]byte("AWS:" + s.password))
	expires := float64(time.Now().Add(s.lifetime).UnixMilli()) / 1000
	out := map[string]any{"authorizationData": []map[string]any{{
		"authorizationToken": token,
		"expiresAt":          expires,
		"proxyEndpoint":      "https://123456789012.dkr.ecr." + sig.region + ".amazonaws.com",
	}}}
	w.Header().Set("Content-Type", ContentType)
	_ = json.NewEncoder(w).Encode(out)
}

// writeError answers as AWS's awsJson1.1 services do.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Amzn-Errortype", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
}

// sigV4 is a parsed "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
// Signature=…" header.
type sigV4 struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuthorization(h string) (*sigV4, error) {
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return nil, fmt.Errorf("no AWS4-HMAC-SHA256 Authorization header")
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return nil, fmt.Errorf("malformed Authorization field %q", f)
		}
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || scope[0] == "" {
		return nil, fmt.Errorf("malformed Credential %q", fields["Credential"])
	}
	if fields["SignedHeaders"] == "" || len(fields["Signature"]) != 64 {
		return nil, fmt.Errorf("no SignedHeaders or Signature")
	}
	return &sigV4{
		accessKey: scope[0], date: scope[1], region: scope[2], service: scope[3],
		signedHeaders: strings.Split(fields["SignedHeaders"], ";"),
		signature:     fields["Signature"],
	}, nil
}

// sign computes the signature the request should carry (AWS Signature
// Version 4, as documented in the IAM user guide).
func (s *sigV4) sign(r *http.Request, body []byte, secret string) string {
	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	canon.WriteString(r.URL.EscapedPath() + "\n")
	canon.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	headers := append([]string(nil), s.signedHeaders...)
	sort.Strings(headers)
	for _, h := range headers {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = fmt.Sprint(r.ContentLength)
		default:
			v = strings.Join(r.Header.Values(h), ",")
		}
		canon.WriteString(h + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	canon.WriteString("\n" + strings.Join(headers, ";") + "\n")
	payload := sha256.Sum256(body)
	canon.WriteString(hex.EncodeToString(payload[:]))

	reqHash := sha256.Sum256([]byte(canon.String()))
	scope := strings.Join([]string{s.date, s.region, s.service, "aws4_request"}, "/")
	toSign := "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" + scope + "\n" + hex.EncodeToString(reqHash[:])
	key := []byte("AWS4" + secret)
	for _, part := range []string{s.date, s.region, s.service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// Files are the AWS shared files IsolateEnv points the SDK at. Neither
// exists until the test writes it.
type Files struct {
	Config, Credentials string
}

// IsolateEnv makes the AWS SDK in this test process see only what the test
// sets: every AWS_* variable is unset, the shared config and credentials
// files are paths in a new temporary directory, the EC2 instance metadata
// service is disabled, and every AWS endpoint (ECR's included) is the fake.
// Nothing reaches AWS. It uses t.Setenv, so the test must not be parallel.
func (s *Server) IsolateEnv(t testing.TB) Files {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "") // restored when the test ends
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	f := Files{Config: filepath.Join(dir, "config"), Credentials: filepath.Join(dir, "credentials")}
	t.Setenv("AWS_CONFIG_FILE", f.Config)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f.Credentials)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", s.URL)
	t.Setenv("AWS_ENDPOINT_URL_ECR", s.URL)
	// Retries would only slow a test down.
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	return f
}

// WriteCredentials writes a shared credentials file with one profile.
func WriteCredentials(t testing.TB, path, profile, accessKey, secretKey string) {
	t.Helper()
	data := fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", profile, accessKey, secretKey)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
