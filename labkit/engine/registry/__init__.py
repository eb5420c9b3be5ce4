"""The registry client: pull, push and login over the OCI distribution API, as dockerd does.

Modules (each small, one job):

- ``reference``: Docker's reference grammar -> (registry domain, repository path, tag/digest).
- ``endpoints``: a domain -> the URLs to try (mirrors for docker.io, https or http as
  insecure-registries and 127.0.0.0/8 allow) and the /info RegistryConfig.
- ``auth``: X-Registry-Auth, WWW-Authenticate challenges (Basic, Bearer) and the token cache.
- ``client``: one repository on one endpoint over aiohttp: ping, manifests, blobs, uploads,
  every request authorised, redirects checked, sizes limited.
- ``manifest``: media types, manifest parsing, manifest-list platform selection.
- ``metadata``: what labkit remembers per registry: blob digest <-> layer diff_id.
- ``pull`` / ``push``: the transfers, reported as Docker's JSON progress messages.

References: OCI distribution-spec (spec.md), Docker's token auth spec (distribution
docs/spec/auth/token.md), moby distribution/{pull_v2,push_v2}.go for the client's behaviour.
"""
