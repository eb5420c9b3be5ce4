"""OCI runtime: a bundle (config.json + rootfs) -> create/start/state/kill/delete/run/list.

One verb per module (youki, crun, runc); the CLI is labkit-runtime (cli.py).  Kept empty of
imports on purpose: the CLI's start path imports only what each verb needs.
"""
