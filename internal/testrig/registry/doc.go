// Package registry starts Debian's docker-registry on a free 127.0.0.1 port
// for one test: plain HTTP, htpasswd basic auth, or TLS with a CA generated
// in the test.
package registry
