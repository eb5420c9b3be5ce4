"""The classic image builder (``POST /build``) and ``docker commit``.

parser.py (Dockerfile -> instructions, each with its line) -> instructions.py (each
instruction's arguments, expanded by expand.py) -> builder.py (the steps: runstep.py runs a
RUN in a container, copyfiles.py does COPY/ADD, layerstore.py makes layers, keeps the cache
and the step images).  context.py unpacks the build context safely, ignore.py is
``.dockerignore``, options.py the request's parameters, commit.py ``docker commit``,
recovery.py what a daemon start cleans up after an interrupted build.
"""
