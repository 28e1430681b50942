// Package testapp builds the static test application under
// testdata/apps/testapp for tests and the test image builder.
package testapp

// API (implemented by the testapp helper):
//   func Build(t testing.TB) string              // host GOARCH, CGO_ENABLED=0, cached per process
//   func BuildFor(t testing.TB, goarch string) string
