"""Named volumes (the local driver), and bind, volume and tmpfs mounts for containers.

``store.VolumeStore`` owns LABKIT_ROOT/volumes/NAME/{_data,opts.json}; ``spec`` parses
HostConfig.Binds / HostConfig.Mounts / Config.Volumes into mount points (pure: no disk);
``oci`` turns resolved mount points into OCI ``mounts`` entries.
"""

from labkit.engine.volumes.names import anonymous_name, validate_name
from labkit.engine.volumes.store import VolumeNotFoundError, VolumeStore

__all__ = ["VolumeNotFoundError", "VolumeStore", "anonymous_name", "validate_name"]
