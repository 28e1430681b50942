package ecr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// maxErrorBody bounds how much of a refusal's body is read.
const maxErrorBody = 64 << 10

// Transport wraps inner, the transport that reaches registries, so that a
// registry refusing one of the client's tokens gets a new one:
//
//   - a 401, or a 403 saying the token expired, to a request that carried a
//     token this client handed out makes the client fetch a new token (or
//     take one another process cached meanwhile) and the request is sent
//     once more with it;
//   - a refusal that remains, a plain 403 (the identity may not read the
//     repository), or a failure to get a new token is passed up with the
//     registry's own errors and one more, code DENIED, that says what
//     happened: the repository, the registry ID and region, where the
//     credentials came from.
//
// Requests to other registries, and to ECR with credentials from elsewhere,
// pass through untouched.
//
// This is the one place that sees both the token and the registry's answer:
// keychains and authenticators hand out credentials and never learn they
// were refused. Pass the result to remote.WithTransport; go-containerregistry
// puts its auth handshake and retries on top of it.
func (c *Client) Transport(inner http.RoundTripper) http.RoundTripper {
	if inner == nil {
		inner = http.DefaultTransport
	}
	return &transport{c: c, inner: inner}
}

type transport struct {
	c     *Client
	inner http.RoundTripper
}

// CloseIdleConnections reaches the inner transport, for
// http.Client.CloseIdleConnections.
func (t *transport) CloseIdleConnections() {
	if ci, ok := t.inner.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil || (resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden) {
		return resp, err
	}
	user, pass, ok := req.BasicAuth()
	if !ok || user == "" || pass == "" {
		return resp, nil // no credentials sent: the auth handshake's ping
	}
	reg, err := ParseHost(req.URL.Host)
	if err != nil {
		return resp, nil
	}
	body := readBody(resp)
	repo := repository(req.URL.Path)
	if resp.StatusCode == http.StatusForbidden && !mentionsExpiry(body) {
		// The token is good: its identity may not do this.
		if tok := t.c.current(reg, pass); tok != nil {
			return deny(resp, body, fmt.Sprintf("access denied to %s in ECR registry %s (%s) for the AWS identity of the token (credentials from %s, token fetched %s): check its IAM policy (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer) and the repository policy",
				repoText(repo), reg.ID, reg.Region, tok.Source, tok.FetchedAt.Local().Format(time.RFC3339))), nil
		}
		return resp, nil
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return resp, nil // can't send it again
	}
	tok, ours, err := t.c.replace(req.Context(), reg, pass)
	if !ours {
		return resp, nil
	}
	if err != nil {
		return deny(resp, body, fmt.Sprintf("ECR registry %s refused the authorization token (%s) and a new one could not be fetched: %v", reg.Host, resp.Status, err)), nil
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return deny(resp, body, fmt.Sprintf("ECR registry %s refused the authorization token (%s); the request could not be sent again: %v", reg.Host, resp.Status, err)), nil
		}
	}
	retry.SetBasicAuth(tok.Username, tok.Password)
	resp2, err := t.inner.RoundTrip(retry)
	if err != nil || (resp2.StatusCode != http.StatusUnauthorized && resp2.StatusCode != http.StatusForbidden) {
		return resp2, err
	}
	return deny(resp2, readBody(resp2), fmt.Sprintf("access denied to %s in ECR registry %s (%s) even with an authorization token fetched just now (credentials from %s): the AWS identity has no access to it, or the token is not valid for this registry",
		repoText(repo), reg.ID, reg.Region, tok.Source)), nil
}

// current returns the client's token for reg if its password is pass.
func (c *Client) current(reg Registry, pass string) *Token {
	e := c.entry(reg.key())
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tok != nil && e.tok.Password == pass {
		return e.tok
	}
	return nil
}

// readBody reads (a bounded part of) resp's body, closes it and puts what
// it read back in its place.
func readBody(resp *http.Response) []byte {
	if resp.Body == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// mentionsExpiry reports whether a refusal says the token expired, as ECR's
// 403 "Your authorization token has expired" does.
func mentionsExpiry(body []byte) bool {
	return bytes.Contains(bytes.ToLower(body), []byte("expired"))
}

// deny replaces resp's body with the registry's errors (from body) plus a
// DENIED error carrying msg, in the registry API's error format, so that
// go-containerregistry reports both.
func deny(resp *http.Response, body []byte, msg string) *http.Response {
	var doc struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || len(doc.Errors) == 0 {
		doc.Errors = nil
		said := resp.Status
		if s := strings.TrimSpace(string(body)); s != "" && utf8.ValidString(s) {
			if len(s) > 512 {
				s = s[:512] + "…"
			}
			said += ": " + s
		}
		msg += " (the registry answered " + said + ")"
	}
	d, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"DENIED", msg})
	doc.Errors = append(doc.Errors, d)
	b, _ := json.Marshal(doc)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header = resp.Header.Clone()
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
	resp.Header.Del("Content-Encoding")
	return resp
}

// repository extracts the repository from a registry API path,
// /v2/NAME/(manifests|blobs|tags|referrers)/...
func repository(path string) string {
	p, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(p, sep); i > 0 {
			return p[:i]
		}
	}
	return ""
}

func repoText(repo string) string {
	if repo == "" {
		return "the repository"
	}
	return fmt.Sprintf("repository %q", repo)
}
