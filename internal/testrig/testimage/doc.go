// Package testimage builds realistic OCI test images at test time, without
// network, from busybox-static, the static test app and generated content,
// using go-containerregistry.
//
// Layers are described with a [LayerBuilder] (files, directories, links,
// devices, xattrs, overlay whiteouts and deliberately hostile entries) and
// encoded by [LayerBuilder.Layer] into gzip, zstd or uncompressed blobs with
// OCI or Docker media types. Each encoded layer lives in the test's temporary
// directory, so large layers stream through disk rather than memory.
//
// Ready-made images:
//   - [Busybox]: /bin/busybox with every applet as a symlink, users, groups.
//   - [App]: Busybox plus the test app as the entrypoint.
//   - [Layered]: whiteouts, opaque dirs, links, devices, xattrs across three
//     layers, with the merged [Tree] a correct unpack must produce.
//   - [Index]: a multi-platform index of test app images.
//   - [Random]: large generated images for benchmarks.
//
// Output: [Push], [PushIndex], [WriteLayout], [WriteOCIArchive] and
// [WriteDockerArchive]. [Entries] reads a layer back for assertions.
//
// Every function takes a testing.TB and fails the test on error. Builds are
// deterministic: the same inputs give the same digests.
package testimage
