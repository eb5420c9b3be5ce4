"""The only package that touches ctypes and libc: syscall wrappers, constants, feature flags.

Kept import-light on purpose: labkit-runtime and the shim import it on their start path.
"""
