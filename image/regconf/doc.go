// Package regconf holds berth's registry configuration, credentials and
// transports: where a reference is pulled from (mirrors, then the origin),
// how each registry is reached (CAs, insecure, endpoint overrides, timeouts),
// who berth is there (auth file, credential helpers, extra keychains such as
// ECR's) and whether a login works before it is saved.
//
// # Registry configuration (/etc/berth/registries.json)
//
// One JSON object; a missing file means the defaults. Every key is optional.
// Parsing is strict: an unknown key, a value of the wrong type or form, a key
// given twice or a CA file without a certificate is an error naming the file,
// the key and the problem.
//
//	{
//	  "connectTimeout": "15s",
//	  "responseTimeout": "60s",
//	  "readTimeout": "60s",
//	  "registries": {
//	    "docker.io": {
//	      "mirrors": ["mirror.internal:5000", "harbor.internal/dockerhub-proxy"]
//	    },
//	    "ghcr.io": {"caFiles": ["/etc/berth/certs/corp-proxy-ca.pem"]},
//	    "10.0.0.5:5000": {"insecure": true},
//	    "registry.internal": {"endpoint": "10.0.0.7:443", "caFiles": ["certs/internal-ca.pem"]},
//	    "*.corp.example.com": {"caFiles": ["certs/corp-ca.pem"]}
//	  }
//	}
//
// Top-level keys:
//
//   - connectTimeout: TCP connect, and the TLS handshake (at most 10s), per
//     connection. Default 15s.
//   - responseTimeout: from sending a request to the response's headers.
//     Default 60s.
//   - readTimeout: a connection on which nothing arrives for this long after
//     the last byte read or written fails (a stalled download is retried or
//     reported instead of hanging). Default 60s.
//   - registries: settings per registry host.
//
// Timeouts are Go durations ("90s", "2m"), more than 0 and at most 1h.
//
// A registries key is a registry host as written in image references,
// "host" or "host:port", in lower case, with no scheme and no path;
// "docker.io", "index.docker.io" and "registry-1.docker.io" are one key
// (Docker Hub) and may appear only once. "*.example.com[:port]" matches every
// host under example.com (any depth, not example.com itself) with the same
// port, or no port; an exact key wins over wildcards, and a longer wildcard
// over a shorter one. "host" and "host:5000" are different registries.
//
// The settings of each registry:
//
//   - mirrors: ["host[:port][/path]", …] tried in order before the registry
//     itself. The reference's repository is appended to the path, with
//     Docker Hub's implicit "library/" spelled out: with the mirror
//     "harbor.internal/dockerhub-proxy", busybox:1 is pulled as
//     harbor.internal/dockerhub-proxy/library/busybox:1. A mirror is reached
//     with its own host's settings (CAs, insecure, endpoint) and its own
//     credentials; its own mirrors are not followed.
//   - caFiles: PEM files of CA certificates trusted for this host in addition
//     to the system roots (unlike SSL_CERT_FILE, which replaces them).
//     Relative names are relative to the configuration file's directory.
//   - insecure: true allows plain HTTP and TLS without certificate
//     verification for this host, as Docker's insecure-registries does (ggcr
//     tries HTTPS first, then HTTP). Loopback hosts (localhost, *.localhost,
//     127.0.0.0/8, ::1) may use plain HTTP without it, as in Docker; their
//     HTTPS is still verified. Any other host, RFC 1918 addresses included,
//     gets HTTPS only unless it is marked insecure.
//   - endpoint: "host[:port]" to connect to instead of the host's DNS address
//     (curl's --connect-to). HTTP requests and TLS still use the configured
//     registry name: the server's certificate must be valid for that name,
//     not for the endpoint. Without a port the port of the request is kept.
//     A key without a port is overridden for connections to ports 443 and 80,
//     a key with a port for that port. Proxies from the environment are not
//     used for overridden hosts.
//
// Settings follow the host of each request, not the image being pulled:
// a registry's token server or blob store on another host (say
// auth.example.com) is reached with that host's settings, which a wildcard
// key can share.
//
// # Auth file (/etc/berth/auth.json)
//
// Docker's config.json format (see [AuthFile]), mode 0600. The CLI passes its
// path (--authfile, BERTH_AUTH_FILE). [Login] and [Logout] rewrite it
// atomically and keep whatever else it holds. berth never reads
// $HOME/.docker/config.json or $DOCKER_CONFIG. A file readable by group or
// others is used, with a warning: refusing it would break files other tools
// wrote, and Docker and Podman accept them too.
//
// # Credentials
//
// [Keychain] looks in the auth file, then the credential helper it names,
// then extra keychains (ECR), then falls back to anonymous.
package regconf
