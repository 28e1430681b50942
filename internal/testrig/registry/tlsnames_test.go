//go:build linux

package registry_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/berth-dev/berth/internal/testrig/registry"
)

// TestTLSNames: the certificate covers the extra names (reached through a
// dialer that connects them to the registry) and no others.
func TestTLSNames(t *testing.T) {
	t.Parallel()
	reg := registry.Start(t, registry.WithTLSNames("registry.berth.test", "123456789012.dkr.ecr.us-east-1.amazonaws.com"))
	rt := reg.Transport().(*http.Transport)
	rt.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, reg.Host)
	}
	for _, host := range []string{"registry.berth.test", "123456789012.dkr.ecr.us-east-1.amazonaws.com", reg.Host} {
		if code, err := get(t, rt, "https://"+host+"/v2/"); err != nil || code != http.StatusOK {
			t.Fatalf("GET https://%s/v2/: %d, %v", host, code, err)
		}
	}
	_, err := get(t, rt, "https://other.berth.test/v2/")
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Fatalf("GET for a name the certificate lacks: %v, want x509.HostnameError", err)
	}
}
