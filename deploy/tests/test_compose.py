"""The compose demo (deploy/compose/), checked without a Docker engine: two
statehold + demo-bot pairs behind nginx, one Redis, each statehold pointed at
its own bot by environment, nginx balancing over both, every build file
present. (The shared statehold.toml passing check-config is tests/deploy.rs.)"""

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
COMPOSE = ROOT / "deploy" / "compose"


def services():
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]


def test_two_pairs_behind_nginx_share_one_redis():
    s = services()
    assert set(s) == {"redis", "bot-a", "bot-b", "statehold-a", "statehold-b", "nginx"}
    for pair in "ab":
        statehold = s[f"statehold-{pair}"]
        assert statehold["environment"]["STATEHOLD_UPSTREAM__URL"] == f"http://bot-{pair}:3000"
        assert statehold["depends_on"]["redis"]["condition"] == "service_healthy"
        assert statehold["volumes"] == ["./statehold.toml:/etc/statehold/config.toml:ro"]
    upstreams = re.findall(r"server (statehold-[ab]):8080", (COMPOSE / "nginx.conf").read_text())
    assert upstreams == ["statehold-a", "statehold-b"]
    assert s["nginx"]["ports"] == ["8080:8080"]


def test_every_build_file_is_there():
    for name, service in services().items():
        build = service.get("build")
        if build:
            context = (COMPOSE / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
            assert context == ROOT, name
