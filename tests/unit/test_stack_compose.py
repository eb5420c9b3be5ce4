"""The compose v3 reader: the subset normalised, every other key reported with its line,
YAML errors with their line, interpolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.swarm.stack.compose import ComposeError, load, parse, parse_bytes

GOOD = """\
version: "3.8"
services:
  web:
    image: nginx:${TAG:-1.25}
    command: ["nginx", "-g", "daemon off;"]
    entrypoint: /docker-entrypoint.sh
    environment:
      - MODE=prod
      - FROM_SHELL
    ports:
      - "8080:80"
      - "5353:53/udp"
      - target: 443
        published: 8443
        mode: host
    networks:
      front:
        aliases: [www]
      back:
    secrets:
      - db_pw
      - source: api_key
        target: key.txt
        mode: 0400
    configs: [site]
    volumes:
      - data:/data
      - ./html:/usr/share/nginx/html:ro
      - type: tmpfs
        target: /cache
        tmpfs: {size: 64m}
    labels: {tier: web}
    hostname: web
    user: "101"
    working_dir: /srv
    deploy:
      mode: replicated
      replicas: 3
      endpoint_mode: vip
      placement:
        constraints: [node.role == worker]
        preferences: [{spread: node.labels.zone}]
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3}
      update_config: {parallelism: 2, delay: 10s, failure_action: rollback, order: start-first}
      resources:
        limits: {cpus: "0.5", memory: 256M}
  worker:
    image: alpine
    command: sleep 1d
    deploy: {mode: global}
networks:
  front:
    driver: overlay
    attachable: true
    driver_opts: {encrypted: ""}
    ipam:
      config: [{subnet: 10.20.0.0/24}]
  back:
    external: true
secrets:
  db_pw: {file: ./pw.txt}
  api_key: {external: true}
configs:
  site: {file: ./site.conf}
volumes:
  data:
"""


def test_the_subset_is_normalised(tmp_path: Path) -> None:
    c = parse(GOOD, "stack.yml", tmp_path, env={"FROM_SHELL": "x"})
    web = c.services["web"]
    assert web["image"] == "nginx:1.25"
    assert web["command"] == ["nginx", "-g", "daemon off;"]
    assert web["entrypoint"] == ["/docker-entrypoint.sh"]
    assert web["environment"] == {"MODE": "prod", "FROM_SHELL": None}
    assert web["ports"] == [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
        {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 5353, "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 443, "PublishedPort": 8443, "PublishMode": "host"}]
    assert web["networks"] == {"front": ["www"], "back": []}
    assert [(s["source"], s["target"], s["mode"]) for s in web["secrets"]] == [
        ("db_pw", "db_pw", 0o444), ("api_key", "key.txt", 0o400)]
    assert web["configs"][0]["target"] == "site"
    vols = web["volumes"]
    assert (vols[0]["Type"], vols[0]["Source"]) == ("volume", "data")
    assert vols[1] == {"Type": "bind", "Source": str(tmp_path / "html"),
                       "Target": "/usr/share/nginx/html", "ReadOnly": True,
                       "_path": "services.web.volumes[1]"}
    assert vols[2]["TmpfsOptions"] == {"SizeBytes": 64 << 20}
    d = web["deploy"]
    assert d["replicas"] == 3 and d["restart_policy"]["delay"] == 5 * 10**9
    assert d["update_config"]["order"] == "start-first"
    assert d["resources"]["limits"] == {"cpus": 500_000_000, "memory": 256 << 20}
    assert d["placement"]["preferences"] == ["node.labels.zone"]
    assert c.services["worker"]["command"] == ["sleep", "1d"]
    assert c.networks["front"]["ipam"]["config"] == [{"Subnet": "10.20.0.0/24"}]
    assert c.networks["back"]["external"] and c.secrets["api_key"]["external"]
    assert c.warnings == []


def test_unknown_keys_are_errors_with_their_line(tmp_path: Path) -> None:
    text = ("version: '3'\nservices:\n  web:\n    image: nginx\n    ulimits:\n"
            "      nofile: 1024\n    deploy:\n      replicas: 2\n      rolback: {}\n"
            "networks:\n  n: {driver: overlay, scope: swarm}\nextra: 1\n")
    with pytest.raises(ComposeError) as exc:
        parse(text, "stack.yml", tmp_path)
    assert exc.value.problems == [
        "stack.yml:5: services.web.ulimits: not supported by stack deploy",
        "stack.yml:9: services.web.deploy.rolback: not supported by stack deploy",
        "stack.yml:11: networks.n.scope: not supported by stack deploy",
        "stack.yml:12: extra: not supported by stack deploy"]
    assert isinstance(exc.value, errors.InvalidArgumentError)
    assert str(exc.value).splitlines()[0] == exc.value.problems[0]


def test_keys_docker_ignores_are_warnings_with_their_line(tmp_path: Path) -> None:
    text = ("services:\n  web:\n    image: nginx\n    build: .\n    depends_on: [db]\n"
            "  db:\n    image: redis\n    x-note: free-form\n")
    c = parse(text, "stack.yml", tmp_path)
    assert c.warnings == [
        ("stack.yml:4: services.web.build: not supported by stack deploy, ignored (as "
        "Docker does)"),
        ("stack.yml:5: services.web.depends_on: not supported by stack deploy, ignored (as "
        "Docker does)")]
    assert set(c.services) == {"web", "db"}


@pytest.mark.parametrize(("text", "problem"), [
    ("services:\n  web:\n    image: [nginx\n", "stack.yml:4: YAML syntax error"),
    ("services:\n  web:\n\timage: x\n", "stack.yml:3: YAML syntax error"),
    ("version: '2'\nservices:\n  a: {image: x}\n",
     'stack.yml:1: version: unsupported compose file version "2"'),
    ("services:\n  a:\n    command: x\n", "stack.yml:2: services.a: image is required"),
    ("services:\n  a:\n    image: x\n    networks: [nope]\n",
     "stack.yml:4: services.a.networks: service a refers to undefined network nope"),
    ("services:\n  a:\n    image: x\n    secrets: [s]\n",
     "stack.yml:4: services.a.secrets[0]: service a refers to undefined secret s"),
    ("services:\n  a:\n    image: x\n    volumes: ['v:/d']\n",
     "stack.yml:4: services.a.volumes[0]: service a refers to undefined volume v"),
    ("services:\n  a:\n    image: x\n    ports: ['127.0.0.1:80:80']\n",
     'stack.yml:4: services.a.ports[0]: invalid port "127.0.0.1:80:80"'),
    ("services:\n  a:\n    image: x\n    deploy:\n      replicas: many\n",
     "stack.yml:5: services.a.deploy.replicas: must be an integer"),
    ("services:\n  a:\n    image: x\n    deploy:\n      mode: global\n      replicas: 2\n",
     ("stack.yml:6: services.a.deploy.replicas: replicas can only be used with the "
     "replicated mode")),
    ("services:\n  a:\n    image: x\n    deploy: {restart_policy: {delay: soon}}\n",
     'stack.yml:4: services.a.deploy.restart_policy.delay: invalid duration "soon"'),
    ("services:\n  a: {image: x}\n  a: {image: y}\n", "stack.yml:3: services.a: duplicate key"),
    ("services:\n  a: {image: '${NOPE:?set NOPE}'}\n",
     "stack.yml:2: services.a.image: required variable NOPE is missing a value: set NOPE"),
    ("services:\n  a: {image: 'x${'}\n", ("stack.yml:2: services.a.image: invalid "
     "interpolation format")),
    ("secrets:\n  s: {}\nservices:\n  a: {image: x, secrets: [s]}\n",
     "stack.yml:2: secrets.s: needs a file (or external: true)"),
    ("", "stack.yml:1: the file is empty"),
    ("services:\n  a:\n    image: x\n    deploy:\n      resources:\n        reservations: {}\n",
     "stack.yml:6: services.a.deploy.resources.reservations: not supported by stack deploy"),
    ("services:\n  a.b: {image: x}\n", "stack.yml:2: services.a.b: invalid service name"),
    (("services:\n  a:\n    image: x\n    deploy:\n      placement:\n        constraints:\n"
     "          - node.role==manager\n          - node.zone==a\n"),
     "stack.yml:8: services.a.deploy.placement.constraints[1]: constraint key 'node.zone'"),
    (("services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    driver_opts:\n"
     "      com.docker.network.driver.overlay.vxlanid_list: '99'\n"),
     ("stack.yml:6: networks.n.driver_opts.com.docker.network.driver.overlay.vxlanid_list: "
     "the overlay driver does not support this option")),
])
def test_errors_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ComposeError) as exc:
        parse(text, "stack.yml", tmp_path, env={})
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_interpolation(tmp_path: Path) -> None:
    text = ("services:\n  a:\n    image: '${IMG}:${TAG-latest}'\n    environment:\n"
            "      PRICE: '$$5'\n      E: '${EMPTY:-dflt}'\n      F: '${EMPTY-keep}'\n"
            "      G: $UNSET\n")
    c = parse(text, "s.yml", tmp_path, env={"IMG": "redis", "EMPTY": ""})
    a = c.services["a"]
    assert a["image"] == "redis:latest"
    assert a["environment"] == {"PRICE": "$5", "E": "dflt", "F": "", "G": ""}
    assert c.warnings == [('s.yml:8: services.a.environment.G: the "UNSET" variable is not '
                          "set, defaulting to a blank string")]


def test_ranges_and_sizes(tmp_path: Path) -> None:
    c = parse("services:\n  a: {image: x, ports: ['8000-8001:80-81']}\n", "s.yml", tmp_path)
    assert [(p["PublishedPort"], p["TargetPort"]) for p in c.services["a"]["ports"]] == [
        (8000, 80), (8001, 81)]
    assert parse_bytes("1g") == 1 << 30 and parse_bytes("512") == 512
    with pytest.raises(ValueError):
        parse_bytes("lots")


def test_load_reads_relative_to_the_file(tmp_path: Path) -> None:
    f = tmp_path / "stack.yml"
    f.write_text("services:\n  a: {image: x, volumes: ['./d:/d']}\n")
    c = load(f)
    assert c.filename == "stack.yml" and c.base == tmp_path.resolve()
    assert c.services["a"]["volumes"][0]["Source"] == str(tmp_path.resolve() / "d")
    with pytest.raises(errors.NotFoundError):
        load(tmp_path / "missing.yml")


def test_anchors_merge_keys_and_octal_modes(tmp_path: Path) -> None:
    text = ("x-base: &base\n  image: alpine\n  environment: {A: '1'}\nservices:\n"
            "  a:\n    <<: *base\n    image: redis\n"
            "    secrets: [{source: s, mode: '0440'}]\nsecrets:\n  s: {file: ./s}\n")
    a = parse(text, "s.yml", tmp_path).services["a"]
    assert a["image"] == "redis" and a["environment"] == {"A": "1"}
    assert a["secrets"][0]["mode"] == 0o440
    with pytest.raises(ComposeError, match="must be an octal file mode"):
        parse(text.replace("'0440'", "'rw'"), "s.yml", tmp_path)
