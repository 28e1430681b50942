package image

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FuzzManifestConfig feeds arbitrary manifest and config bytes, as a
// registry or an archive could send them, through the parsing and checks a
// pull applies before it fetches any layer. It must never panic, and a
// record it accepts must be self-consistent: one sha256 DiffID and chain ID
// per distributable layer, chain IDs derived as the OCI spec says.
func FuzzManifestConfig(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:`+strings.Repeat("a", 64)+`","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:`+strings.Repeat("b", 64)+`","size":10}]}`),
		[]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:`+strings.Repeat("c", 64)+`"]}}`))
	f.Add([]byte(`{"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:x","size":-1}]}`), []byte(`{"rootfs":{"diff_ids":[]}}`))
	f.Add([]byte(`{}`), []byte(`{}`))
	f.Add([]byte(`{"layers":[{"digest":"md5:abc"}]}`), []byte(`{"rootfs":{"diff_ids":["md5:abc"]}}`))
	ref, _ := name.ParseReference("registry.test/fuzz:1")
	s := &Store{}
	f.Fuzz(func(t *testing.T, manifest, config []byte) {
		m, err := v1.ParseManifest(bytes.NewReader(manifest))
		if err != nil {
			return
		}
		cfg, err := v1.ParseConfigFile(bytes.NewReader(config))
		if err != nil {
			return
		}
		rec, err := s.recordFor(ref, m, cfg, sha256Hash(manifest), nil)
		if err != nil {
			return
		}
		if len(rec.Layers) != len(cfg.RootFS.DiffIDs) {
			t.Fatalf("record has %d layers, config %d DiffIDs", len(rec.Layers), len(cfg.RootFS.DiffIDs))
		}
		var chain v1.Hash
		for i, l := range rec.Layers {
			if !isSHA256(rec.ID) || !isSHA256(l.Digest) || !isSHA256(l.DiffID) || !isSHA256(l.ChainID) {
				t.Fatalf("layer %d: non-sha256 digest accepted: %+v", i, l)
			}
			if i == 0 {
				chain = l.DiffID
			} else {
				chain = sha256Hash([]byte(chain.String() + " " + l.DiffID.String()))
			}
			if l.ChainID != chain {
				t.Fatalf("layer %d: chain ID %s, want %s", i, l.ChainID, chain)
			}
		}
	})
}
