"""`stack deploy`: a compose v3 file (compose.py) turned into the Engine API bodies the Docker
CLI sends (convert.py) and deployed through labkit's client (deploy.py)."""
