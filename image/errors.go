package image

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinel errors; every error from this package that fits one wraps it.
var (
	ErrNotFound           = errors.New("image not found")
	ErrInvalidReference   = errors.New("invalid image reference")
	ErrInUse              = errors.New("image in use")
	ErrVerify             = errors.New("content verification failed")
	ErrUnauthorized       = errors.New("registry refused the credentials")
	ErrNoMatchingPlatform = errors.New("no image for the platform")
)

// RegistryError is a registry's answer that ended a pull: its HTTP status
// and its own message. Temporary reports whether retrying may help.
type RegistryError struct {
	Registry   string
	StatusCode int
	Message    string
	Err        error
}

func (e *RegistryError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Err.Error()
	}
	if e.StatusCode == 0 {
		return e.Registry + ": " + msg
	}
	return e.Registry + ": " + http.StatusText(e.StatusCode) + " (" + strconv.Itoa(e.StatusCode) + "): " + msg
}

func (e *RegistryError) Unwrap() error { return e.Err }

// Temporary reports whether the failure may go away on retry: timeouts,
// connection failures (a body cut short included), 408, 429 and 5xx.
func (e *RegistryError) Temporary() bool {
	switch {
	case e.StatusCode == http.StatusRequestTimeout, e.StatusCode == http.StatusTooManyRequests:
		return true
	case e.StatusCode >= 500:
		return true
	case e.StatusCode == 0:
		var ne net.Error
		return errors.As(e.Err, &ne) || errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, io.ErrUnexpectedEOF)
	}
	return false
}

// IsRetryable reports whether err is worth retrying later (a supervisor
// restarting a task whose image pull failed uses it).
func IsRetryable(err error) bool {
	var re *RegistryError
	if errors.As(err, &re) {
		return re.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// classify turns go-containerregistry's transport errors into RegistryError.
func classify(registry string, err error) error {
	if err == nil {
		return nil
	}
	var re *RegistryError
	if errors.As(err, &re) {
		return err
	}
	// A certificate problem is the real story even when ggcr then tried
	// plain HTTP and got a 400 from the TLS port.
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return &RegistryError{Registry: registry, Message: "TLS certificate not trusted: " + cv.Err.Error() + " (add the registry's CA to caFiles in registries.json)", Err: cv}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		msg := ""
		for i, d := range te.Errors {
			if i > 0 {
				msg += "; "
			}
			msg += d.String()
		}
		out := &RegistryError{Registry: registry, StatusCode: te.StatusCode, Message: msg, Err: err}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			out.Err = errors.Join(ErrUnauthorized, err)
		case http.StatusNotFound:
			out.Err = errors.Join(ErrNotFound, err)
		}
		return out
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &RegistryError{Registry: registry, Err: err}
	}
	return err
}
