package ecr

import (
	"errors"
	"testing"
)

func TestParseHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want Registry
		err  error
	}{
		{host: "123456789012.dkr.ecr.us-east-1.amazonaws.com", want: Registry{Host: "123456789012.dkr.ecr.us-east-1.amazonaws.com", ID: "123456789012", Region: "us-east-1"}},
		{host: "123456789012.DKR.ECR.EU-West-3.AmazonAWS.com", want: Registry{Host: "123456789012.dkr.ecr.eu-west-3.amazonaws.com", ID: "123456789012", Region: "eu-west-3"}},
		{host: "123456789012.dkr.ecr.us-east-1.amazonaws.com:443", want: Registry{Host: "123456789012.dkr.ecr.us-east-1.amazonaws.com", ID: "123456789012", Region: "us-east-1"}},
		{host: "000000000001.dkr.ecr.cn-north-1.amazonaws.com.cn", want: Registry{Host: "000000000001.dkr.ecr.cn-north-1.amazonaws.com.cn", ID: "000000000001", Region: "cn-north-1"}},
		{host: "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", want: Registry{Host: "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", ID: "123456789012", Region: "us-gov-west-1", FIPS: true}},
		{host: "123456789012.dkr-ecr-fips.us-east-2.amazonaws.com", want: Registry{Host: "123456789012.dkr-ecr-fips.us-east-2.amazonaws.com", ID: "123456789012", Region: "us-east-2", FIPS: true, DualStack: true}},
		{host: "123456789012.dkr-ecr.ap-southeast-2.on.aws", want: Registry{Host: "123456789012.dkr-ecr.ap-southeast-2.on.aws", ID: "123456789012", Region: "ap-southeast-2", DualStack: true}},
		{host: "123456789012.dkr-ecr-fips.us-east-1.on.aws", want: Registry{Host: "123456789012.dkr-ecr-fips.us-east-1.on.aws", ID: "123456789012", Region: "us-east-1", FIPS: true, DualStack: true}},
		{host: "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", want: Registry{Host: "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn", ID: "123456789012", Region: "cn-northwest-1", DualStack: true}},
		{host: "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", want: Registry{Host: "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", ID: "123456789012", Region: "us-iso-east-1"}},
		{host: "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", want: Registry{Host: "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", ID: "123456789012", Region: "us-isob-east-1"}},
		{host: "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", want: Registry{Host: "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", ID: "123456789012", Region: "eu-isoe-west-1"}},
		{host: "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", want: Registry{Host: "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", ID: "123456789012", Region: "us-isof-south-1"}},
		{host: "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", want: Registry{Host: "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", ID: "123456789012", Region: "eusc-de-east-1"}},

		// Not ECR at all: left to other keychains.
		{host: "public.ecr.aws", err: ErrNotECR},
		{host: "docker.io", err: ErrNotECR},
		{host: "ghcr.io", err: ErrNotECR},
		{host: "localhost:5000", err: ErrNotECR},
		{host: "127.0.0.1:5000", err: ErrNotECR},
		{host: "", err: ErrNotECR},
		{host: "amazonaws.com", err: ErrNotECR},
		{host: "s3.us-east-1.amazonaws.com", err: ErrNotECR},
		{host: "api.ecr.us-east-1.amazonaws.com", err: ErrNotECR},
		{host: "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example", err: ErrNotECR},
		{host: "123456789012.dkr.ecr.us-east-1.amazonaws.com:5000", err: ErrNotECR},
		{host: "123456789012.dkr.ecr.us-east-1.example.com", err: ErrNotECR},
		{host: "123456789012.dkr.ecs.us-east-1.amazonaws.com", err: ErrNotECR},

		// ECR's shape, mistyped.
		{host: "12345678901.dkr.ecr.us-east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "1234567890123.dkr.ecr.us-east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "12345678901a.dkr.ecr.us-east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "dkr.ecr.us-east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "x.123456789012.dkr.ecr.us-east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr..amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr.useast1.amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr.us-east-.amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr.us--east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr.1us-east-1.amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr.us-east-1.extra.amazonaws.com", err: ErrInvalidHost},
		{host: "123456789012.dkr.ecr.us_east_1.amazonaws.com", err: ErrInvalidHost},
	} {
		t.Run(tc.host, func(t *testing.T) {
			got, err := ParseHost(tc.host)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseHost(%q) = %+v, %v; want an error wrapping %q", tc.host, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseHost(%q) = %+v, %v; want %+v", tc.host, got, err, tc.want)
			}
		})
	}
}

func TestIsPublic(t *testing.T) {
	for host, want := range map[string]bool{
		"public.ecr.aws":     true,
		"PUBLIC.ECR.AWS:443": true,
		"public.ecr.aws.cn":  false,
		"ecr.aws":            false,
		"123456789012.dkr.ecr.us-east-1.amazonaws.com": false,
	} {
		if got := IsPublic(host); got != want {
			t.Errorf("IsPublic(%q) = %v, want %v", host, got, want)
		}
	}
}
