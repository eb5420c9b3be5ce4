"""OCI images: content-addressed blobs, layers (tar <-> overlay), the overlay snapshotter."""
