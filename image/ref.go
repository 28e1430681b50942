package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is how berth names Docker Hub in image names, as docker does;
// go-containerregistry calls it index.docker.io.
const dockerHub = "docker.io"

// ParseReference parses an image reference the way docker does: a short
// name gets docker.io and, for one-component names, library/; a missing tag
// is :latest.
func ParseReference(s string) (name.Reference, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty image reference", ErrInvalidReference)
	}
	if strings.TrimSpace(s) != s {
		return nil, fmt.Errorf("%w: %q has surrounding spaces", ErrInvalidReference, s)
	}
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		// StrictValidation refuses the implicit :latest; retry the plain way.
		ref, err = name.ParseReference(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, s, err)
		}
	}
	return ref, nil
}

// Name is the canonical, fully qualified name of a reference, as berth
// stores and prints it: docker.io/library/busybox:latest,
// 127.0.0.1:5000/app@sha256:….
func Name(ref name.Reference) string {
	repo := repoName(ref.Context())
	switch r := ref.(type) {
	case name.Digest:
		return repo + "@" + r.DigestStr()
	case name.Tag:
		return repo + ":" + r.TagStr()
	default:
		return ref.String()
	}
}

// repoName is a repository's canonical name with docker.io for Docker Hub.
func repoName(repo name.Repository) string {
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = dockerHub
	}
	return reg + "/" + repo.RepositoryStr()
}

// FamiliarName shortens a canonical name as docker prints it:
// docker.io/library/busybox:latest → busybox:latest.
func FamiliarName(s string) string {
	if rest, ok := strings.CutPrefix(s, dockerHub+"/"); ok {
		if short, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(short, "/") {
			return short
		}
		return rest
	}
	return s
}
