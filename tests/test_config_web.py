"""The `web:` section of jobs.yaml: every key read, every error located with its fix."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from lib.config import load_config
from lib.errors import ConfigError
from lib.models import ProxyHeaders, WebSettings

JOB = "jobs:\n  nightly:\n    schedule: '0 6 * * *'\n    project_dir: proj\n"


@pytest.fixture(autouse=True)
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "dbt_project.yml").write_text("name: p\n")
    return folder


def write(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(JOB + textwrap.dedent(web))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(issue).removeprefix(f"{path.parent}/") for issue in info.value.issues]


def test_without_web_there_is_no_web_server_and_alerts_have_no_run_link(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.web == WebSettings()
    assert config.web.address is None and config.web.base_url is None


def test_every_web_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        web:
          listen: "0.0.0.0:8080"
          base_url: https://dbt.example.com/
          trusted_proxies: [127.0.0.1, 10.0.0.0/8, "::1"]
          proxy_headers: {user: X-Auth-Request-User, groups: X-Auth-Request-Groups}
          group_roles: {data-eng: operator, analysts: viewer, platform: admin}
          read_only: true
          session_hours: 8
          metrics_textfile: metrics/dbt_scheduler.prom
        """,
    )
    web = load_config(path).web
    assert web.listen == "0.0.0.0:8080" and web.address == ("0.0.0.0", 8080)
    assert web.base_url == "https://dbt.example.com"  # the trailing slash dropped
    assert web.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert web.proxy_headers == ProxyHeaders(
        user="X-Auth-Request-User", email="X-Forwarded-Email", groups="X-Auth-Request-Groups"
    )
    assert web.group_roles == {"data-eng": "operator", "analysts": "viewer", "platform": "admin"}
    assert web.read_only is True and web.session_hours == 8
    assert web.metrics_textfile == tmp_path / "metrics" / "dbt_scheduler.prom"


def test_an_ipv6_listen_address_is_taken_in_brackets(tmp_path: Path) -> None:
    web = load_config(write(tmp_path, "web: {listen: '[0:0::1]:9000'}\n")).web
    assert web.listen == "[::1]:9000" and web.address == ("::1", 9000)


def test_base_url_reaches_the_alerts_run_links(tmp_path: Path) -> None:
    from lib.history import History
    from lib.notify.dispatcher import build_notifier

    config = load_config(write(tmp_path, "web: {base_url: 'https://dbt.example.com/ui/'}\n"))
    notifier = build_notifier(config, History(tmp_path / "h.db"), mask=str)
    assert notifier.base_url == "https://dbt.example.com/ui"


@pytest.mark.parametrize(
    "web,expected",
    [
        (
            "web: {listen: 8080}\n",
            "jobs.yaml:5 web.listen: 8080 has no port from 1 to 65535; write host:port",
        ),
        (
            "web: {listen: 'localhost:99999'}\n",
            "jobs.yaml:5 web.listen: 'localhost:99999' has no port from 1 to 65535",
        ),
        (
            "web: {listen: '::1:8080'}\n",
            "jobs.yaml:5 web.listen: '::1:8080': put an IPv6 address in brackets",
        ),
        (
            "web: {listen: 'bad host:80'}\n",
            "jobs.yaml:5 web.listen: 'bad host' is not a host name or address",
        ),
        ("web: {base_url: dbt.example.com}\n", "jobs.yaml:5 web.base_url: must be the http(s) URL"),
        (
            "web:\n  trusted_proxies:\n    - 127.0.0.1\n    - 10.1.2.3/8\n",
            "jobs.yaml:8 web.trusted_proxies[1]: '10.1.2.3/8' is not an IP address or network "
            "(10.1.2.3/8 has host bits set): did you mean 10.0.0.0/8?",
        ),
        (
            "web:\n  trusted_proxies: [localhost]\n",
            "jobs.yaml:6 web.trusted_proxies[0]: 'localhost' is not an IP address or network",
        ),
        (
            "web:\n  group_roles:\n    data-eng: operater\n",
            "jobs.yaml:7 web.group_roles.data-eng: 'operater' is not a role: did you mean 'operator'? "
            "(roles: viewer, operator, admin)",
        ),
        (
            "web:\n  group_roles:\n    analysts: reader\n",
            "jobs.yaml:7 web.group_roles.analysts: 'reader' is not a role (roles: viewer, operator, admin)",
        ),
        (
            "web:\n  proxy_headers:\n    user: 'X Forwarded User'\n",
            "jobs.yaml:7 web.proxy_headers.user: must be an HTTP header name such as X-Forwarded-User",
        ),
        (
            "web:\n  proxy_headers: {usr: X-User}\n",
            "jobs.yaml:6 web.proxy_headers.usr: unknown key: did you mean 'user'?",
        ),
        ("web: {read_only: 'yes'}\n", "jobs.yaml:5 web.read_only: must be true or false, got 'yes'"),
        (
            "web: {session_hours: 0}\n",
            "jobs.yaml:5 web.session_hours: must be a whole number from 1 to 744, got 0",
        ),
        (
            "web: {metrics_textfile: /var/lib/node_exporter/dbt.txt}\n",
            "jobs.yaml:5 web.metrics_textfile: '/var/lib/node_exporter/dbt.txt' does not end in .prom",
        ),
        ("web: {lisen: '127.0.0.1:80'}\n", "jobs.yaml:5 web.lisen: unknown key: did you mean 'listen'?"),
        ("web: 8080\n", "jobs.yaml:5 web: must be a mapping"),
    ],
)
def test_a_bad_web_value_is_one_located_line_with_its_fix(tmp_path: Path, web: str, expected: str) -> None:
    found = errors_of(write(tmp_path, web))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_every_bad_web_key_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  listen: nowhere\n  group_roles: {a: root}\n  read_only: 1\n")
    found = errors_of(path)
    assert [line.split()[0] for line in found] == ["jobs.yaml:6", "jobs.yaml:7", "jobs.yaml:8"], found


def test_a_config_error_in_web_exits_2_naming_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from lib.cli import main

    path = write(tmp_path, "web: {group_roles: {data-eng: oprator}}\n")
    assert main(["--config", str(path), "validate"]) == 2
    err = capsys.readouterr().err
    assert "jobs.yaml:5 web.group_roles.data-eng: 'oprator' is not a role: did you mean 'operator'?" in err
