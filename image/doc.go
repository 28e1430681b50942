// Package image pulls images from OCI and Docker v2 registries (Amazon ECR
// included) and turns them into root filesystems.
//
// On disk, under the state root:
//
//	blobs/sha256/<hex>      manifests, configs and compressed layers as pulled,
//	                        each verified (digest and size) before it is renamed
//	                        into place; the directory is an OCI layout's blob dir
//	images/<name>.json      one record per reference: manifest digest, platform,
//	                        layers with their DiffIDs and chain IDs
//	snapshots/<chain>/fs    one unpacked layer, an overlayfs lower dir shared by
//	                        every image that has the layer at that position
//	snapshots/<chain>/meta.json
//
// A blob or a snapshot becomes visible only by an atomic rename after every
// digest has been checked and its content is durable, and an image record is
// written only after all its blobs and snapshots exist: a pull killed at any
// moment, or a power cut, leaves nothing that counts as present with missing
// or torn content, and the next pull reuses every finished layer. Layers are
// unpacked under a per-chain-ID lock, so concurrent pulls that share layers
// unpack each one once.
//
// Durability costs one syncfs(2) per batch of layers, not per file and not
// per layer: a layer that is written and verified gives up its download slot
// and waits for a sync that began after it finished (layers finishing
// meanwhile share the next one), then renames its blob and snapshot into
// place and fsyncs the two directories. The other layers go on downloading
// and unpacking while the disk catches up.
package image
