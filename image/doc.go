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
// digest has been checked, and an image record is written only after all its
// blobs and snapshots exist: a pull killed at any moment leaves nothing that
// counts as present, and the next pull reuses every finished layer. Layers are
// unpacked under a per-chain-ID lock, so concurrent pulls that share layers
// unpack each one once.
package image
