// Package testimage builds OCI test images from busybox-static and the
// static test app with go-containerregistry.
package testimage
