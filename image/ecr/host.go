package ecr

import (
	"fmt"
	"strings"
)

// Registry is a private Amazon ECR registry, as its hostname names it.
type Registry struct {
	// Host is the registry's hostname as image references write it, in
	// lower case and without ":443".
	Host string
	// ID is the registry ID: the 12-digit AWS account that owns it.
	ID string
	// Region is the AWS region the registry lives in.
	Region string
	// FIPS is set for FIPS endpoints (dkr.ecr-fips, dkr-ecr-fips): the
	// token is then fetched from ECR's FIPS API endpoint too.
	FIPS bool
	// DualStack is set for dual-stack (IPv4 and IPv6) endpoints
	// (dkr-ecr.REGION.on.aws): the token is then fetched from ECR's
	// dual-stack API endpoint too.
	DualStack bool
}

// String returns the registry's hostname.
func (r Registry) String() string { return r.Host }

// key names the registry's token: one token serves every hostname of a
// registry (standard, FIPS, dual-stack).
func (r Registry) key() string { return r.ID + "." + r.Region }

// PublicHost is Amazon ECR Public's registry. Its images are pulled
// anonymously: the registry's own token server hands out anonymous tokens.
const PublicHost = "public.ecr.aws"

// IsPublic reports whether host is Amazon ECR Public.
func IsPublic(host string) bool {
	return strings.EqualFold(strings.TrimSuffix(host, ":443"), PublicHost)
}

// services are the hostname labels that name ECR's Docker registry API:
// standard, FIPS, dual-stack, and dual-stack FIPS.
var services = []struct {
	label           string
	fips, dualStack bool
}{
	{".dkr.ecr.", false, false},
	{".dkr.ecr-fips.", true, false},
	{".dkr-ecr.", false, true},
	{".dkr-ecr-fips.", true, true},
}

// domains are the DNS suffixes of AWS partitions that host ECR registries:
// commercial, China, dual-stack (commercial and China), the ISO partitions
// and the European Sovereign Cloud.
var domains = []string{
	"amazonaws.com",
	"amazonaws.com.cn",
	"on.aws",
	"on.amazonwebservices.com.cn",
	"c2s.ic.gov",
	"sc2s.sgov.gov",
	"cloud.adc-e.uk",
	"csp.hci.ic.gov",
	"amazonaws.eu",
}

// ParseHost recognises a private ECR registry by its hostname,
// ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn] or
// ACCOUNT.dkr-ecr[-fips].REGION.on.aws (and the other partitions' domains),
// optionally with ":443". The registry ID and region come from the name.
//
// A host that is not an ECR registry (public.ecr.aws included) gives an
// error wrapping [ErrNotECR]. A host under an AWS domain with ECR's service
// label but a bad registry ID or region gives one wrapping [ErrInvalidHost]:
// it was meant to be ECR and is mistyped.
func ParseHost(host string) (Registry, error) {
	h := strings.ToLower(host)
	h = strings.TrimSuffix(h, ":443")
	domain := ""
	for _, d := range domains {
		if strings.HasSuffix(h, "."+d) && len(d) > len(domain) {
			domain = d
		}
	}
	if domain == "" {
		return Registry{}, fmt.Errorf("%q: %w", host, ErrNotECR)
	}
	rest := "." + strings.TrimSuffix(h, "."+domain) + "."
	for _, s := range services {
		i := strings.Index(rest, s.label)
		if i < 0 {
			continue
		}
		id, region := "", strings.TrimSuffix(rest[i+len(s.label):], ".")
		if i > 0 {
			id = rest[1:i]
		}
		if err := checkID(id); err != nil {
			return Registry{}, fmt.Errorf("%q: %w: %v", host, ErrInvalidHost, err)
		}
		if err := checkRegion(region); err != nil {
			return Registry{}, fmt.Errorf("%q: %w: %v", host, ErrInvalidHost, err)
		}
		return Registry{Host: h, ID: id, Region: region, FIPS: s.fips, DualStack: s.dualStack}, nil
	}
	return Registry{}, fmt.Errorf("%q: %w", host, ErrNotECR)
}

// checkID checks an ECR registry ID: an AWS account ID, 12 digits.
func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("no registry ID (the 12-digit AWS account ID) before the service name")
	}
	if len(id) != 12 || strings.Trim(id, "0123456789") != "" {
		return fmt.Errorf("registry ID %q is not a 12-digit AWS account ID", id)
	}
	return nil
}

// checkRegion checks the form of a region name: lower-case words of
// letters and digits joined by dashes, starting with a letter and ending
// with a digit ("us-east-1", "us-gov-west-1", "cn-north-1").
func checkRegion(r string) error {
	bad := func() error { return fmt.Errorf("region %q is not an AWS region name (like us-east-1)", r) }
	if len(r) < 4 || len(r) > 32 || !strings.Contains(r, "-") {
		return bad()
	}
	if r[0] < 'a' || r[0] > 'z' || r[len(r)-1] < '0' || r[len(r)-1] > '9' {
		return bad()
	}
	for _, part := range strings.Split(r, "-") {
		if part == "" || strings.Trim(part, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			return bad()
		}
	}
	return nil
}
