// Package registry starts Debian's docker-registry (distribution 2.8) on a
// free 127.0.0.1 port for one test: plain HTTP, htpasswd basic auth, TLS with
// a CA generated in the test, or TLS with basic auth.
//
//	reg := registry.Start(t, registry.WithTLS(), registry.WithBasicAuth("u", "p"))
//	err := remote.Write(ref, img, reg.RemoteOptions()...)
//
// The registry runs in its own process group with its storage in a
// t.TempDir; Stop (also run by t.Cleanup) kills the group and waits, and a
// failed test gets the registry's log. The registry must be on PATH (package
// docker-registry): testrig.RequireBinary fails the test in CI and skips it
// elsewhere.
//
// ggcr treats loopback registries as insecure: it tries https, then falls
// back to http. RemoteOptions's transport trusts only the test CA, so with
// WithTLS the https attempt is the one that succeeds.
package registry
