package ecr

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseHost feeds arbitrary hostnames (they come from image references
// users type and from task definitions) to ParseHost: it never panics,
// every error is one of its two kinds, and what it accepts is a
// well-formed registry that the same hostname describes.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{
		"123456789012.dkr.ecr.us-east-1.amazonaws.com",
		"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com:443",
		"123456789012.dkr-ecr.eu-west-1.on.aws",
		"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
		"public.ecr.aws",
		"dkr.ecr.us-east-1.amazonaws.com",
		".dkr.ecr..amazonaws.com",
		"1.dkr-ecr-fips.dkr.ecr.a-1.on.aws",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		reg, err := ParseHost(host)
		if err != nil {
			if !errors.Is(err, ErrNotECR) && !errors.Is(err, ErrInvalidHost) {
				t.Fatalf("ParseHost(%q): unexpected error kind: %v", host, err)
			}
			return
		}
		if len(reg.ID) != 12 || strings.Trim(reg.ID, "0123456789") != "" {
			t.Fatalf("ParseHost(%q): registry ID %q", host, reg.ID)
		}
		if checkRegion(reg.Region) != nil {
			t.Fatalf("ParseHost(%q): region %q", host, reg.Region)
		}
		if reg.Host != strings.TrimSuffix(strings.ToLower(host), ":443") {
			t.Fatalf("ParseHost(%q): host %q", host, reg.Host)
		}
		if !strings.HasPrefix(reg.Host, reg.ID+".") || !strings.Contains(reg.Host, "."+reg.Region+".") {
			t.Fatalf("ParseHost(%q) = %+v: ID and region are not the hostname's", host, reg)
		}
		// The registry's own hostname parses to itself.
		again, err := ParseHost(reg.Host)
		if err != nil || again != reg {
			t.Fatalf("ParseHost(%q) = %+v, %v; want %+v", reg.Host, again, err, reg)
		}
		// Cache file names come from the key: no path separators.
		if strings.ContainsAny(reg.key(), "/\\\x00") || strings.HasPrefix(reg.key(), ".") {
			t.Fatalf("ParseHost(%q): unsafe cache key %q", host, reg.key())
		}
	})
}
