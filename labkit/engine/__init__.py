"""The container engine: images, runtime, shim, supervisor, daemon, client."""
