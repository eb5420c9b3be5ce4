"""compose -> Engine API bodies, checked against what the Docker CLI sent for the same file
(../shared/reference/docker-api.md, `docker stack deploy -c stack.yml voter`)."""

from __future__ import annotations

from pathlib import Path

from labkit.engine.swarm.stack import convert
from labkit.engine.swarm.stack.compose import parse

VOTER = """\
version: "3.8"
services:
  vote:
    image: nginx:latest
    ports: ["8080:80"]
    deploy: {replicas: 2}
  redis:
    image: alpine:latest
    command: sleep 1d
"""


def test_voter_bodies_match_the_docker_cli(tmp_path: Path) -> None:
    c = parse(VOTER, "stack.yml", tmp_path)
    used = convert.networks_used(c)
    assert list(used) == ["default"]
    assert convert.network_body("voter", "default", used["default"]) == {
        "CheckDuplicate": False, "Driver": "overlay", "Scope": "", "EnableIPv6": False,
        "IPAM": None, "Internal": False, "Attachable": False, "Ingress": False,
        "ConfigOnly": False, "ConfigFrom": None, "Options": None,
        "Labels": {"com.docker.stack.namespace": "voter"}, "Name": "voter_default"}
    vote = convert.service_spec("voter", "vote", c, image="nginx:latest@sha256:ab")
    assert vote == {
        "Name": "voter_vote",
        "Labels": {"com.docker.stack.image": "nginx:latest",
                   "com.docker.stack.namespace": "voter"},
        "TaskTemplate": {"ContainerSpec": {"Image": "nginx:latest@sha256:ab",
                                           "Labels": {"com.docker.stack.namespace": "voter"}},
                         "Networks": [{"Target": "voter_default", "Aliases": ["vote"]}]},
        "Mode": {"Replicated": {"Replicas": 2}},
        "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80,
                                    "PublishedPort": 8080, "PublishMode": "ingress"}]}}
    redis = convert.service_spec("voter", "redis", c)
    assert redis["TaskTemplate"]["ContainerSpec"] == {
        "Image": "alpine:latest", "Labels": {"com.docker.stack.namespace": "voter"},
        "Args": ["sleep", "1d"]}
    assert "EndpointSpec" not in redis and redis["Mode"] == {"Replicated": {"Replicas": 1}}


def test_secrets_networks_volumes_and_deploy(tmp_path: Path) -> None:
    text = """\
services:
  app:
    image: app:1
    entrypoint: [/bin/app]
    environment: {B: "2", A: null, C: null}
    networks: {front: {aliases: [api]}, ext: null}
    secrets: [{source: pw, target: pw.txt, uid: "100", mode: 0400}]
    configs: [conf]
    volumes: [data:/data, "ext:/ext"]
    deploy:
      mode: global
      endpoint_mode: dnsrr
      placement: {constraints: [node.role==worker], preferences: [{spread: node.labels.az}]}
      restart_policy: {condition: any, max_attempts: 2}
      update_config: {parallelism: 2, delay: 1s, order: start-first}
      resources: {limits: {cpus: "1.5", memory: 1G}}
      labels: {team: x}
networks:
  front: {attachable: true, driver_opts: {encrypted: ""}, ipam: {config: [{subnet: 10.9.0.0/24}]}}
  ext: {external: true, name: shared}
secrets:
  pw: {file: ./pw}
configs:
  conf: {external: true}
volumes:
  data: {labels: {keep: "yes"}}
  ext: {external: true}
"""
    c = parse(text, "s.yml", tmp_path)
    nets = convert.networks_used(c)
    assert set(nets) == {"front", "ext"}
    front = convert.network_body("st", "front", nets["front"])
    assert front["Attachable"] and front["Options"] == {"encrypted": ""}
    assert front["IPAM"] == {"Driver": "", "Options": None,
                             "Config": [{"Subnet": "10.9.0.0/24"}]}
    assert convert.object_name("st", "ext", nets["ext"]) == "shared"
    assert convert.secret_spec("st", "pw", c.secrets["pw"], b"s3cr3t") == {
        "Name": "st_pw", "Labels": {"com.docker.stack.namespace": "st"}, "Data": "czNjcjN0"}
    spec = convert.service_spec("st", "app", c, secret_ids={"st_pw": "SID"},
                                config_ids={"conf": "CID"}, environ={"A": "from-env"})
    cs = spec["TaskTemplate"]["ContainerSpec"]
    assert cs["Command"] == ["/bin/app"] and cs["Env"] == ["A=from-env", "B=2"]
    assert cs["Secrets"] == [{"File": {"Name": "pw.txt", "UID": "100", "GID": "0",
                                       "Mode": 0o400}, "SecretID": "SID", "SecretName": "st_pw"}]
    assert cs["Configs"] == [{"File": {"Name": "conf", "UID": "0", "GID": "0", "Mode": 0o444},
                              "ConfigID": "CID", "ConfigName": "conf"}]
    assert cs["Mounts"] == [
        {"Type": "volume", "Source": "st_data", "Target": "/data",
         "VolumeOptions": {"Labels": {"keep": "yes", "com.docker.stack.namespace": "st"}}},
        {"Type": "volume", "Source": "ext", "Target": "/ext"}]
    task = spec["TaskTemplate"]
    assert task["Networks"] == [{"Target": "shared", "Aliases": ["app"]},
                                {"Target": "st_front", "Aliases": ["api", "app"]}]
    assert task["Placement"] == {"Constraints": ["node.role==worker"], "Preferences": [
        {"Spread": {"SpreadDescriptor": "node.labels.az"}}]}
    assert task["RestartPolicy"] == {"Condition": "any", "MaxAttempts": 2}
    assert task["Resources"] == {"Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 1 << 30}}
    assert spec["Mode"] == {"Global": {}}
    assert spec["EndpointSpec"] == {"Mode": "dnsrr"}
    assert spec["UpdateConfig"] == {"Parallelism": 2, "Delay": 10**9, "Order": "start-first",
                                    "MaxFailureRatio": 0}
    assert spec["Labels"] == {"team": "x", "com.docker.stack.namespace": "st",
                              "com.docker.stack.image": "app:1"}


# Recorded: the Docker CLI 28.2.2's `docker stack deploy -c stack.yml st` against an in-memory
# API (no digest available), for RICH below.  Docker also sends fields left at their zero
# value (Privileges with nulls, ForceUpdate 0, Placement {}, Resources {}, EndpointSpec {});
# the converter leaves those out, which the daemon reads the same.
RICH = """\
version: "3.8"
services:
  app:
    image: app:1
    entrypoint: [/bin/app]
    command: run --fast
    environment: {B: "2", A: "1"}
    hostname: apphost
    user: "101"
    working_dir: /srv
    networks: {front: {aliases: [api]}}
    secrets: [{source: pw, target: pw.txt, uid: "100", mode: 0400}]
    configs: [conf]
    volumes: [data:/data, "/etc:/hostetc:ro", {type: tmpfs, target: /cache, tmpfs: {size: 1048576}}]
    ports: ["8080:80", {target: 53, published: 5353, protocol: udp, mode: host}]
    labels: {c: d}
    deploy:
      mode: replicated
      replicas: 2
      endpoint_mode: vip
      placement: {constraints: [node.role==worker], preferences: [{spread: node.labels.az}]}
      restart_policy: {condition: any, max_attempts: 2, delay: 5s}
      update_config: {parallelism: 2, delay: 1s, order: start-first, failure_action: rollback}
      resources: {limits: {cpus: "1.5", memory: 1G}}
      labels: {team: x}
  worker:
    image: alpine
    deploy: {mode: global}
networks:
  front: {attachable: true, driver_opts: {encrypted: ""}, ipam: {config: [{subnet: 10.9.0.0/24}]}}
secrets:
  pw: {file: ./pw}
configs:
  conf: {file: ./conf}
volumes:
  data: {labels: {keep: "yes"}}
"""
DOCKER_APP = {
    "EndpointSpec": {"Mode": "vip", "Ports": [
        {"Protocol": "udp", "PublishMode": "host", "PublishedPort": 5353, "TargetPort": 53},
        {"Protocol": "tcp", "PublishMode": "ingress", "PublishedPort": 8080, "TargetPort": 80}]},
    "Labels": {"com.docker.stack.image": "app:1", "com.docker.stack.namespace": "st",
               "team": "x"},
    "Mode": {"Replicated": {"Replicas": 2}}, "Name": "st_app",
    "TaskTemplate": {
        "ContainerSpec": {
            "Args": ["run", "--fast"], "Command": ["/bin/app"],
            "Configs": [{"ConfigID": "C1", "ConfigName": "st_conf",
                         "File": {"GID": "0", "Mode": 292, "Name": "conf", "UID": "0"}}],
            "Dir": "/srv", "Env": ["A=1", "B=2"], "Hostname": "apphost", "Image": "app:1",
            "Labels": {"c": "d", "com.docker.stack.namespace": "st"},
            "Mounts": [{"Source": "st_data", "Target": "/data", "Type": "volume",
                        "VolumeOptions": {"Labels": {"com.docker.stack.namespace": "st",
                                                     "keep": "yes"}}},
                       {"ReadOnly": True, "Source": "/etc", "Target": "/hostetc",
                        "Type": "bind"},
                       {"Target": "/cache", "TmpfsOptions": {"SizeBytes": 1048576},
                        "Type": "tmpfs"}],
            "Secrets": [{"File": {"GID": "0", "Mode": 256, "Name": "pw.txt", "UID": "100"},
                         "SecretID": "S1", "SecretName": "st_pw"}],
            "User": "101"},
        "Networks": [{"Aliases": ["api", "app"], "Target": "st_front"}],
        "Placement": {"Constraints": ["node.role==worker"],
                      "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.az"}}]},
        "Resources": {"Limits": {"MemoryBytes": 1073741824, "NanoCPUs": 1500000000}},
        "RestartPolicy": {"Condition": "any", "Delay": 5000000000, "MaxAttempts": 2}},
    "UpdateConfig": {"Delay": 1000000000, "FailureAction": "rollback", "MaxFailureRatio": 0,
                     "Order": "start-first", "Parallelism": 2}}
DOCKER_FRONT = {"Attachable": True, "CheckDuplicate": False, "ConfigFrom": None,
                "ConfigOnly": False, "Driver": "overlay", "EnableIPv6": False,
                "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}], "Driver": "", "Options": None},
                "Ingress": False, "Internal": False,
                "Labels": {"com.docker.stack.namespace": "st"}, "Name": "st_front",
                "Options": {"encrypted": ""}, "Scope": ""}


def test_a_rich_file_matches_the_docker_cli(tmp_path: Path) -> None:
    c = parse(RICH, "stack.yml", tmp_path)
    # 28.2.2 sends CheckDuplicate true and no EnableIPv6; 20.10 sent the recorded voter
    # body (CheckDuplicate false), which labkit keeps
    assert convert.network_body("st", "front", convert.networks_used(c)["front"]) == \
        DOCKER_FRONT
    assert sorted(convert.networks_used(c)) == ["default", "front"]
    assert convert.service_spec("st", "app", c, secret_ids={"st_pw": "S1"},
                                config_ids={"st_conf": "C1"}) == DOCKER_APP
    worker = convert.service_spec("st", "worker", c, image="alpine:latest")
    assert worker == {"Labels": {"com.docker.stack.image": "alpine",
                                 "com.docker.stack.namespace": "st"},
                      "Mode": {"Global": {}}, "Name": "st_worker",
                      "TaskTemplate": {"ContainerSpec": {
                          "Image": "alpine:latest",
                          "Labels": {"com.docker.stack.namespace": "st"}},
                          "Networks": [{"Aliases": ["worker"], "Target": "st_default"}]}}


def test_healthcheck_hosts_dns_sysctls_logging(tmp_path: Path) -> None:
    text = """\
services:
  a:
    image: x
    healthcheck: {test: "wget -q -O- localhost", interval: 10s, retries: 3}
    extra_hosts: ["db:10.0.0.9"]
    dns: [10.0.0.2]
    dns_search: [lab]
    sysctls: {net.core.somaxconn: 1024}
    logging: {driver: json-file, options: {max-size: 1m}}
  b:
    image: x
    healthcheck: {disable: true}
"""
    c = parse(text, "s.yml", tmp_path)
    a = convert.service_spec("st", "a", c)
    cs = a["TaskTemplate"]["ContainerSpec"]
    assert cs["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost"],
                                 "Interval": 10 * 10**9, "Retries": 3}
    assert cs["Hosts"] == ["10.0.0.9 db"]
    assert cs["DNSConfig"] == {"Nameservers": ["10.0.0.2"], "Search": ["lab"]}
    assert cs["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert a["TaskTemplate"]["LogDriver"] == {"Name": "json-file",
                                              "Options": {"max-size": "1m"}}
    b = convert.service_spec("st", "b", c)
    assert b["TaskTemplate"]["ContainerSpec"]["Healthcheck"] == {"Test": ["NONE"]}
