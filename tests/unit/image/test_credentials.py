"""Credentials from enroot-style netrc files and Docker's config.json (through the docker SDK)."""

import base64
import json

from hpcctl.image.credentials import lookup_here, parse_netrc


def test_netrc_keeps_several_logins_per_machine():
    text = """# NGC
machine nvcr.io login $oauthtoken password nvapi-key
machine nvcr.io
  login alice
  password alicepw
default login anon password anonpw
"""
    assert parse_netrc(text) == [("nvcr.io", "$oauthtoken", "nvapi-key"), ("nvcr.io", "alice", "alicepw"),
                                 ("", "anon", "anonpw")]


def test_netrc_lookup_by_host_port_and_user(tmp_path):
    netrc = tmp_path / "credentials"
    netrc.write_text("machine reg.example:5001 login bob password b1\nmachine nvcr.io login $oauthtoken "
                     "password k\nmachine nvcr.io login alice password a\n")
    found = lookup_here("reg.example:5001", None, str(netrc), docker_config=False, home=str(tmp_path))
    assert (found.username, found.password) == ("bob", "b1")
    assert lookup_here("nvcr.io", None, str(netrc), False, str(tmp_path)).username == "$oauthtoken"
    assert lookup_here("nvcr.io", "alice", str(netrc), False, str(tmp_path)).password == "a"
    assert lookup_here("other.io", None, str(netrc), False, str(tmp_path)) is None
    assert "a" not in repr(lookup_here("nvcr.io", "alice", str(netrc), False, str(tmp_path))).split("'")[3:4]


def test_docker_config_json_auths(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    (tmp_path / ".docker").mkdir()
    auth = base64.b64encode(b"carol:c-secret").decode()
    (tmp_path / ".docker/config.json").write_text(json.dumps({"auths": {
        "127.0.0.1:5001": {"auth": auth}, "https://index.docker.io/v1/": {"auth": auth}}}))
    found = lookup_here("127.0.0.1:5001", None, "~/.netrc-none", docker_config=True, home=str(tmp_path))
    assert (found.username, found.password) == ("carol", "c-secret")
    assert lookup_here("docker.io", None, "~/.netrc-none", True, str(tmp_path)).username == "carol"
    assert lookup_here("127.0.0.1:5001", None, "~/.netrc-none", False, str(tmp_path)) is None


def test_home_relative_netrc_path(tmp_path):
    (tmp_path / ".config/enroot").mkdir(parents=True)
    (tmp_path / ".config/enroot/.credentials").write_text("machine r.io login u password p\n")
    assert lookup_here("r.io", None, "~/.config/enroot/.credentials", False, str(tmp_path)).password == "p"
