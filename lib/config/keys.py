"""Every jobs.yaml key, described once.

Each `Key` names its check (lib/config/checks.py), its default, its JSON Schema, a
one-line Markdown doc and the version that brought it. From these tables come the
parser's unknown-key and value checks (lib/config/parser.py), the README's reference
tables (lib/config/reference.py, kept equal by tests/test_config_keys.py) and the JSON
Schema (lib/config/schema.py, `scheduler.py schema`, jobs.schema.json).

Adding a key: one `Key(...)` entry in its section, plus its behaviour where the value
is used (and a field on the dataclass that carries it, lib/models.py). Then run
`make docs` to regenerate the README tables and jobs.schema.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lib.aws.arns import parse_kms_key_arn, parse_secret_arn
from lib.config import checks, notify_checks, web_checks
from lib.config.checks import JOB_NAME, MAX_COUNT, MAX_KEEP_DAYS, Check
from lib.durations import MAX_SECONDS
from lib.models import DEFAULT_ALERT_EVENTS
from lib.run_env import SCHEDULER_VARIABLES
from lib.web.roles import ROLE_NAMES

MAX_PARALLEL = 1024
MAX_START_RETRIES = 100
# ECS throttles API calls per account and Region with token buckets that every caller
# shares (the console, the CLI, other tools); a task's state changes over seconds, so
# describing it more often than once a second per run only spends that budget and
# invites ThrottlingException for everyone in the account.
MIN_POLL_INTERVAL = 1.0
RUNNERS = ("local", "docker", "ecs")
OVERLAP_POLICIES = ("skip", "allow")
CATCHUP_POLICIES = ("none", "latest")
LAUNCH_TYPES = ("EC2", "FARGATE")
ENGINES = ("docker", "podman")


@dataclass(frozen=True)
class Key:
    """One jobs.yaml key.

    `check` turns the written value into the one used (None: a cross-key rule in
    parser.py reads the value as written). `default` is the value as a user would write
    it, fed through `check` when the key is absent (None: no default); `shown_default`
    is the README's wording when the value alone would not say it. `schema` is the JSON
    Schema of a valid written value, `section` the keys of a nested mapping.
    """

    name: str
    doc: str
    schema: Mapping[str, Any]
    check: Check | None = None
    default: Any = None
    shown_default: str | None = None
    since: str = "0.1.0"
    required: bool = False
    section: Section | None = None


@dataclass(frozen=True)
class Section:
    """The keys of one mapping in jobs.yaml. `nullable`: a key written as `null` means its
    built-in default (true everywhere but `docker:`, which has always refused it)."""

    title: str
    keys: tuple[Key, ...]
    nullable: bool = True
    by_name: Mapping[str, Key] = field(init=False, repr=False, compare=False)
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {key.name: key for key in self.keys})
        object.__setattr__(self, "names", tuple(key.name for key in self.keys))

    def __getitem__(self, name: str) -> Key:
        return self.by_name[name]


# --------------------------------------------------------------------------- schema pieces

STRING: Mapping[str, Any] = {"type": "string", "minLength": 1}
BOOLEAN: Mapping[str, Any] = {"type": "boolean"}
STRING_LIST: Mapping[str, Any] = {"type": "array", "items": {"type": "string"}}
# What lib/durations.py reads: a number of seconds, or number+unit parts ("1h30m", "2 days").
DURATION_PATTERN = r"^\s*(?:(?:\d+(?:\.\d+)?|\.\d+)|(?:(?:\d+(?:\.\d+)?|\.\d+)\s*[A-Za-z]+[\s,]*)+)\s*$"


def _duration_schema(minimum_exclusive: bool = True) -> Mapping[str, Any]:
    number: dict[str, Any] = {"type": "number", "maximum": MAX_SECONDS}
    number["exclusiveMinimum" if minimum_exclusive else "minimum"] = 0
    return {"anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, number]}


def _whole(minimum: int, maximum: int) -> Mapping[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _enum(options: tuple[str, ...]) -> Mapping[str, Any]:
    return {"enum": list(options)}


DURATION = _duration_schema()
DURATION_OR_ZERO = _duration_schema(minimum_exclusive=False)


# --------------------------------------------------------------------------- nested sections

RETENTION = Section(
    "Retention",
    (
        Key(
            "keep_days",
            "run folders (`<state_dir>/runs/<job>/<run id>/`, whole: log, reports, artifacts, `work/`) and "
            "history rows of runs that started more than this many days ago are deleted. A whole number ≥ 1, "
            'or `null` to keep runs forever (`0` is refused rather than read as "delete everything").',
            _whole(1, MAX_KEEP_DAYS),
            default=90,
            since="0.3.0",
        ),
        Key(
            "keep_failed_work",
            "a failed, timed-out or cancelled run keeps its `work/` (clone, `target/`, compiled SQL) for "
            "debugging; only the newest this many of each job keep it, older ones keep their log and "
            "reports. `0`: no `work/` is kept; `null`: every one is kept until `keep_days`.",
            _whole(0, MAX_COUNT),
            default=5,
            since="0.3.0",
        ),
    ),
)

GIT = Section(
    "git",
    (
        Key(
            "url",
            "the repository URL (https, ssh, git, file:///, or scp-like `git@host:org/repo.git`).",
            STRING,
        ),
        Key(
            "ref",
            "a branch, tag or commit SHA; default: the remote's default branch.",
            {"type": ["string", "integer"]},
        ),
        Key("subdir", "the dbt project's folder inside the repository.", {"type": ["string", "integer"]}),
    ),
)

COMMAND = Section(
    "command",
    (
        Key("run", "the dbt command line.", STRING),
        Key(
            "allow_failure",
            "a failure of this command lets the next one run.",
            BOOLEAN,
            default=False,
            since="0.3.0",
        ),
    ),
)


def _object(section: Section, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of a mapping holding `section`'s keys (and nothing else)."""
    # Imported here: schema.py renders a section, keys.py only needs its object shape.
    from lib.config.schema import section_object

    return section_object(section, required)


GIT_SCHEMA: Mapping[str, Any] = {"anyOf": [STRING, _object(GIT, required=("url",))]}
COMMANDS_SCHEMA: Mapping[str, Any] = {
    "anyOf": [
        STRING,
        {"type": "array", "minItems": 1, "items": {"anyOf": [STRING, _object(COMMAND, required=("run",))]}},
    ]
}
ENV_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": f"^{checks.ENV_NAME.pattern}$"},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}


# --------------------------------------------------------------------------- alerts (issue 9)

_URL_SCHEMA: Mapping[str, Any] = {"type": "string", "pattern": "^(?i:https?)://|\\$\\{"}
_NAMES_SCHEMA: Mapping[str, Any] = {"anyOf": [STRING, {"type": "array", "minItems": 1, "items": STRING}]}
_WALL_TIME_SCHEMA: Mapping[str, Any] = {"type": "string", "pattern": "^([01]?[0-9]|2[0-3]):[0-5][0-9]$"}


def _channel_type(kind: str, *settings: Key) -> Section:
    type_key = Key("type", f"`{kind}`.", {"const": kind}, required=True, since="0.3.0")
    return Section(f"`{kind}` channel", (type_key, *settings))


def _url_key(doc: str, required: bool = True, default: str | None = None) -> Key:
    return Key(
        "url", doc, _URL_SCHEMA, notify_checks.http_url, default=default, required=required, since="0.3.0"
    )


def _secret_text(name: str, doc: str, required: bool = True) -> Key:
    return Key(name, doc, STRING, checks.printable, required=required, since="0.3.0")


CHANNEL_TYPES: Mapping[str, Section] = {
    section.keys[0].schema["const"]: section
    for section in (
        _channel_type("slack", _url_key('the incoming-webhook URL, e.g. `"${SLACK_WEBHOOK_URL}"`.')),
        _channel_type("teams", _url_key("the Teams Workflows webhook URL (Adaptive Card).")),
        _channel_type(
            "pagerduty",
            _secret_text("routing_key", "the Events API v2 integration key."),
            _url_key(
                "the Events API endpoint.",
                required=False,
                default="https://events.pagerduty.com/v2/enqueue",
            ),
        ),
        _channel_type(
            "email",
            _secret_text("host", "the SMTP server."),
            Key("port", "its port.", _whole(1, 65535), checks.whole(1, 65535), default=587, since="0.3.0"),
            Key(
                "starttls",
                "upgrade the connection with STARTTLS.",
                BOOLEAN,
                checks.flag,
                default=True,
                since="0.3.0",
            ),
            _secret_text("username", "the SMTP login, when the server wants one.", required=False),
            _secret_text("password", 'its password (write `"${SMTP_PASSWORD}"`).', required=False),
            Key(
                "from",
                "the sender address.",
                STRING,
                notify_checks.email_address,
                required=True,
                since="0.3.0",
            ),
            Key(
                "to",
                "the recipients.",
                _NAMES_SCHEMA,
                notify_checks.email_addresses,
                required=True,
                since="0.3.0",
            ),
        ),
        _channel_type(
            "sns",
            _secret_text("topic_arn", "the SNS topic's ARN."),
            _secret_text("region", "its region (default: the ARN's).", required=False),
            _secret_text(
                "endpoint_url",
                "another endpoint (moto, LocalStack); default `aws.endpoint_url`.",
                required=False,
            ),
        ),
        _channel_type(
            "webhook",
            _url_key("where the JSON is POSTed."),
            _secret_text(
                "secret",
                "signs each delivery as Standard Webhooks (`whsec_…` or any string).",
                required=False,
            ),
        ),
    )
}

RULE = Section(
    "rule",
    (
        Key(
            "jobs",
            "job names or globs the rule applies to.",
            _NAMES_SCHEMA,
            notify_checks.job_globs,
            default=["*"],
            since="0.3.0",
        ),
        Key(
            "on",
            "the events it sends.",
            {"anyOf": [STRING, {"type": "array", "minItems": 1, "items": STRING}]},
            notify_checks.events,
            default=list(DEFAULT_ALERT_EVENTS),
            since="0.3.0",
        ),
        Key(
            "to",
            "the channels it sends to.",
            _NAMES_SCHEMA,
            notify_checks.channel_names,
            required=True,
            since="0.3.0",
        ),
        Key(
            "after",
            "alert a failure only from the Nth in a row.",
            _whole(1, 10_000),
            checks.whole(1, 10_000),
            default=1,
            since="0.3.0",
        ),
        Key(
            "repeat_every",
            "an identical failure (the same failing nodes) is sent again only after this long.",
            DURATION,
            checks.duration,
            default="24h",
            since="0.3.0",
        ),
        Key(
            "quiet_hours",
            '`{from: "22:00", to: "07:00", timezone: …}`: inside it `started`, `succeeded`, `warned` and '
            "`skipped` are dropped and the rest delayed to its end.",
            {
                "type": "object",
                "properties": {"from": _WALL_TIME_SCHEMA, "to": _WALL_TIME_SCHEMA, "timezone": STRING},
                "required": ["from", "to"],
                "additionalProperties": False,
            },
            notify_checks.quiet_hours,
            since="0.3.0",
        ),
    ),
)


def _notifications(value: Any, field: checks.Field) -> Any:
    from lib.models import Notifications

    if not isinstance(value, dict):
        return field.bad("must be a mapping with `channels:` and `rules:`")
    checks.check_unknown(value, NOTIFICATIONS.names, field.path, field.issues)
    settings = checks.read_section(NOTIFICATIONS, value, field.at, field.memo)
    return Notifications(channels=settings["channels"] or {}, rules=settings["rules"] or ())


NOTIFICATIONS = Section(
    "The `notifications:` section",
    (
        Key(
            "channels",
            "channel name → `{type: slack|teams|pagerduty|email|sns|webhook, …}`; any string may "
            'be `"${ENV_VAR}"` (from the scheduler\'s environment). See [Alerts](#alerts).',
            {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        _object(section, required=tuple(key.name for key in section.keys if key.required))
                        for section in CHANNEL_TYPES.values()
                    ]
                },
            },
            notify_checks.channels,
            default={},
            since="0.3.0",
        ),
        Key(
            "rules",
            "every matching rule sends: `{jobs: [globs], on: [events], to: [channels], after: N, "
            "repeat_every, quiet_hours}`. See [Alerts](#alerts).",
            {"type": "array", "items": _object(RULE, required=("to",))},
            notify_checks.rules,
            default=[],
            since="0.3.0",
        ),
    ),
)


# --------------------------------------------------------------------------- team access (issue 11)

_HEADER: Mapping[str, Any] = {"type": "string", "pattern": "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$"}

PROXY_HEADERS = Section(
    "`web.proxy_headers`",
    (
        Key(
            "user",
            "the header naming the signed-in user (becomes the run's `triggered_by`).",
            _HEADER,
            web_checks.header_name,
            default="X-Forwarded-User",
            since="0.3.0",
        ),
        Key(
            "email",
            "the header carrying their e-mail address.",
            _HEADER,
            web_checks.header_name,
            default="X-Forwarded-Email",
            since="0.3.0",
        ),
        Key(
            "groups",
            "the header listing their groups, comma-separated (oauth2-proxy's form).",
            _HEADER,
            web_checks.header_name,
            default="X-Forwarded-Groups",
            since="0.3.0",
        ),
    ),
)


def _proxy_headers(value: Any, field: checks.Field) -> Any:
    from lib.models import ProxyHeaders

    if not isinstance(value, dict):
        return field.bad("must be a mapping: {user: X-Forwarded-User, email: …, groups: …}")
    checks.check_unknown(value, PROXY_HEADERS.names, field.path, field.issues)
    written = {key: item for key, item in value.items() if item is not None}
    settings = checks.read_section(PROXY_HEADERS, written, field.at, field.memo)
    if any(item is None for item in settings.values()):
        return None
    return ProxyHeaders(**settings)


WEB = Section(
    "The `web:` section",
    (
        Key(
            "listen",
            "`host:port` the web UI and API listen on, e.g. `127.0.0.1:8080` (an IPv6 host in brackets: "
            "`[::1]:8080`). Unset: no web server.",
            {"type": "string", "pattern": "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$"},
            web_checks.listen,
            since="0.3.0",
        ),
        Key(
            "base_url",
            "the URL people open the web UI at (behind a proxy: the proxy's), e.g. "
            "`https://dbt.example.com`; alerts link each run to `<base_url>/runs/<run id>`.",
            {"type": "string", "pattern": "^(?i:https?)://"},
            web_checks.base_url,
            since="0.3.0",
        ),
        Key(
            "trusted_proxies",
            "IP addresses or CIDR networks of the SSO proxy; `proxy_headers` are believed only from "
            "these peers and ignored from any other. See [Team access](#team-access).",
            STRING_LIST,
            web_checks.networks,
            default=[],
            since="0.3.0",
        ),
        Key(
            "proxy_headers",
            "the headers the proxy names the user, e-mail and groups in: see "
            "[`web.proxy_headers`](#webproxy_headers).",
            _object(PROXY_HEADERS),
            _proxy_headers,
            shown_default="oauth2-proxy's `X-Forwarded-*`",
            since="0.3.0",
            section=PROXY_HEADERS,
        ),
        Key(
            "group_roles",
            "proxy group → role (`viewer`, `operator`, `admin`); a user in several gets the highest, a "
            "user in none gets no role (every request 403).",
            {"type": "object", "additionalProperties": _enum(ROLE_NAMES)},
            web_checks.group_roles,
            default={},
            since="0.3.0",
        ),
        Key(
            "read_only",
            "refuse every mutation (run now, cancel, pause, tokens) through the web UI and API.",
            BOOLEAN,
            checks.flag,
            default=False,
            since="0.3.0",
        ),
        Key(
            "session_hours",
            "how long a browser session (signed in with a token) lasts.",
            _whole(1, 24 * 31),
            checks.whole(1, 24 * 31),
            default=12,
            since="0.3.0",
        ),
        Key(
            "audit_days",
            "how many days the audit log keeps an entry; older ones go with the daily retention pass "
            "(`prune`).",
            _whole(1, 36500),
            checks.whole(1, 36500),
            default=365,
            since="0.3.0",
        ),
        Key(
            "metrics_textfile",
            "also write the metrics to this file for node_exporter's textfile collector (it must end in "
            "`.prom`), for boxes nothing scrapes. See [Metrics](#metrics).",
            {"type": "string", "pattern": "\\.prom$"},
            web_checks.textfile,
            since="0.3.0",
        ),
    ),
)


def _web(value: Any, field: checks.Field) -> Any:
    from lib.models import ProxyHeaders, WebSettings

    if not isinstance(value, dict):
        return field.bad("must be a mapping: {listen: 127.0.0.1:8080, base_url: …, …}")
    checks.check_unknown(value, WEB.names, field.path, field.issues)
    written = {key: item for key, item in value.items() if item is not None}
    before = len(field.issues.items)
    settings = checks.read_section(WEB, written, field.at, field.memo)
    if len(field.issues.items) > before:
        return None
    settings["proxy_headers"] = settings["proxy_headers"] or ProxyHeaders()
    return WebSettings(**{key: item for key, item in settings.items() if item is not None})


# --------------------------------------------------------------------------- job keys

JOB = Section(
    "Job keys",
    (
        Key(
            "schedule",
            "5-field cron (`minute hour day-of-month month day-of-week`; lists, ranges, steps, `jan`-`dec`, "
            "`sun`-`sat`) or a macro: `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, "
            "`@hourly`. When day-of-month and day-of-week are both restricted, either may match (as in "
            "cron). Set exactly one of `schedule` and `every`.",
            {"type": "string", "minLength": 1},
            checks.schedule_text,
        ),
        Key(
            "every",
            "an interval phrase: `30 seconds`, `15 minutes`, `2 hours`, `day`, `3 days`, `week`, `day at "
            "06:00`, `hour at :15`, `minute at :30`, `monday at 09:00` (any weekday). Seconds and minutes "
            "are elapsed time on a grid aligned to the Unix epoch (`15 minutes` → :00, :15, :30, :45), so "
            "a restart does not shift them. Hours (1-24) follow the local clock of `timezone` from local "
            "midnight: `6 hours` → 00:00, 06:00, 12:00, 18:00 local every day. See [Time zones and "
            "DST](#time-zones-and-dst).",
            {"type": "string", "minLength": 1},
            checks.schedule_text,
        ),
        Key(
            "timezone",
            "IANA zone the schedule is read in, e.g. `Europe/Paris`. DST: a local time that does not exist "
            "on the spring-forward day runs once when the clock jumps; a repeated time on the fall-back day "
            "runs once; wildcard-hour jobs (`0 * * * *`) keep firing every real hour. See [Time zones and "
            "DST](#time-zones-and-dst).",
            STRING,
            checks.timezone,
            default="UTC",
        ),
        Key(
            "runner",
            "`local`: a process on this host. `docker`: the job image on this host (`docker run --init "
            "--env-file …`; `project_dir` is mounted read-only). `ecs`: an ECS task (needs `aws:` and "
            "`git:`; the task reads its variables from the env file in S3 and its secrets from "
            "`aws.secrets`, so a job `env_file` is refused — put them there).",
            _enum(RUNNERS),
            checks.choice(RUNNERS, "{value!r} is not a runner: use one of {options}"),
            default="local",
        ),
        Key(
            "image",
            "docker runner only: the image to run for this job.",
            STRING,
            checks.text,
            shown_default="`docker.image`",
            since="0.2.0",
        ),
        Key(
            "project_dir",
            "a local dbt project folder (must hold `dbt_project.yml`). Set this or `git`.",
            STRING,
            checks.path,
        ),
        Key(
            "git",
            "`{url, ref, subdir}`: fetch the project fresh on every run (continuous deployment, nothing "
            "baked in). `ref` is a branch, tag or commit SHA (default: the remote's default branch); "
            "`subdir` the project's folder inside the repository. A string is read as the `url`. A URL "
            "carrying a credential is refused at `validate`, for every runner (`https://TOKEN@host/…`, "
            "`https://user:pw@…`; `ssh://git@host/…` names a user and is fine): for HTTPS pass the token "
            "as the env variable `DBT_ENV_SECRET_GIT_TOKEN`.",
            GIT_SCHEMA,
            checks.git,
            section=GIT,
        ),
        Key(
            "profiles_dir",
            "where `profiles.yml` is (`DBT_PROFILES_DIR`).",
            STRING,
            checks.path,
            shown_default="the project's folder",
        ),
        Key(
            "target",
            "dbt target (`DBT_TARGET`), e.g. `dev` or `prod`.",
            STRING,
            checks.text,
            shown_default="the profile's default",
        ),
        Key(
            "commands",
            "dbt commands run in order; the first that fails stops the run, unless it is marked "
            '`allow_failure`. An entry is a string, or a mapping `{run: "dbt source freshness", '
            "allow_failure: true}` whose failure lets the next command run (keys: `run`, `allow_failure`, "
            "default `false`). A single string is a one-command list. See [Command lines](#command-lines) "
            "for what a line may hold. `dbt deps` runs before them whenever the project declares packages.",
            COMMANDS_SCHEMA,
            checks.commands,
            default=["dbt build"],
            section=COMMAND,
        ),
        Key(
            "env_file",
            "a `.env` file (python-dotenv syntax) whose variables the run gets. Must exist.",
            STRING,
            checks.path,
        ),
        Key(
            "env",
            "variables the run gets; they win over `env_file`. For `runner: ecs` jobs they travel in "
            "RunTask's container overrides, which anyone with `ecs:DescribeTasks`, the console and "
            "CloudTrail see: a `DBT_ENV_SECRET_*` name or a value holding a URL credential is refused "
            "there (put it in `aws.secrets`, or `aws.env_file`), and so is a name `aws.secrets` sets.",
            ENV_SCHEMA,
            checks.env,
            default={},
        ),
        Key(
            "timeout",
            "the longest a run may take (`90s`, `15m`, `2h`, `1h30m`, or seconds). On timeout the whole "
            "process group is stopped (SIGINT so dbt cancels its warehouse queries, then SIGTERM, then "
            "SIGKILL) and the run recorded as `timed_out`.",
            DURATION,
            checks.duration,
            shown_default="none",
        ),
        Key(
            "overlap",
            "`skip`: a run due while the job's previous run (scheduled or `run-now`) still runs is skipped "
            "and recorded as skipped. `allow`: both run.",
            _enum(OVERLAP_POLICIES),
            checks.choice(OVERLAP_POLICIES),
            default="skip",
        ),
        Key(
            "catchup",
            "`none`: fire times missed while the daemon was down or asleep are not run (cron's behaviour). "
            "`latest`: on start-up the most recent missed fire time is run once (trigger `catch-up`) if it "
            "is at most `catchup_grace` old; older ones are recorded as skipped. Several missed fire times "
            "are always coalesced into one run (or one missed fire time), and each of the others the "
            "running daemon passed (the host slept, the loop stalled) gets its own `skipped` row, "
            '"coalesced into the run due …": every fire time one row, up to 1,440 of them (a day of a '
            "1-minute job; the last one says how many more there were).",
            _enum(CATCHUP_POLICIES),
            checks.choice(CATCHUP_POLICIES),
            default="none",
        ),
        Key("catchup_grace", "see `catchup`.", DURATION, checks.duration, default="1h"),
        Key(
            "enabled",
            "`false` keeps the job defined (and `run-now`-able) but never scheduled.",
            BOOLEAN,
            checks.flag,
            default=True,
        ),
        Key("description", "free text for people.", {"type": ["string", "number"]}, checks.line_of_text),
        Key(
            "retention",
            "this job's `keep_days` and/or `keep_failed_work`; a key it leaves out comes from the top level. "
            "See [Retention](#retention).",
            _object(RETENTION),
            checks.retention,
            shown_default="the top-level `retention:`",
            since="0.3.0",
            section=RETENTION,
        ),
        Key(
            "notify",
            "channel names: a rule for this job alone, with the default events (`failed`, `timed_out`, "
            "`failed_to_start`, `recovered`, `late`). See [Alerts](#alerts).",
            _NAMES_SCHEMA,
            notify_checks.channel_names,
            since="0.3.0",
        ),
        Key(
            "deadline",
            '`"HH:MM"` in the job\'s `timezone`: when no run has succeeded since the last scheduled fire '
            "time by then, a `late` alert goes out (once per fire time).",
            _WALL_TIME_SCHEMA,
            notify_checks.wall_time,
            since="0.3.0",
        ),
        Key(
            "heartbeat",
            "a healthchecks.io-style check URL: pinged at `/start`, on success, and at `/fail` (with `rid` "
            "= the run id).",
            _URL_SCHEMA,
            notify_checks.job_heartbeat,
            since="0.3.0",
        ),
    ),
)

# Job keys `defaults:` does not take: each has its own top-level home.
NOT_IN_DEFAULTS = {"retention": "set `retention:` at the top level: it is every job's default already"}


# --------------------------------------------------------------------------- aws and docker


def _aws_string(name: str, doc: str, default: str | None = None, since: str = "0.2.0") -> Key:
    return Key(name, doc, STRING, checks.printable, default=default, since=since)


def _poll_interval(value: Any, field: checks.Field) -> float | None:
    seconds = checks.duration_or_zero(value, field)
    if seconds is not None and seconds < MIN_POLL_INTERVAL:
        return field.bad(
            f"{value!r} is too often: at least 1s (ECS throttles describe_tasks per "
            "account and Region, a budget shared with every other caller)"
        )
    return seconds


def _launch_type(value: Any, field: checks.Field) -> str | None:
    upper = str(value).upper()
    if upper not in LAUNCH_TYPES:
        return field.bad(f"{value!r} is not allowed: use EC2 or FARGATE")
    return upper


def _aws_path(value: Any, field: checks.Field) -> Any:
    if not isinstance(value, str):
        return field.bad("must be a path (string)")
    if "\0" in value:
        return field.bad(checks._NUL_IN_PATH)
    return field.memo.path(value)


def _aws_flag(value: Any, field: checks.Field) -> bool | None:
    return value if isinstance(value, bool) else field.bad("must be true or false")


def _secrets(value: Any, field: checks.Field) -> tuple[tuple[str, str], ...] | None:
    """Variable name → parameter or secret ARN, as (name, ARN) pairs sorted by name."""
    if not isinstance(value, dict):
        return field.bad(
            "must be a mapping of variable name → ARN, e.g. "
            "{DBT_ENV_SECRET_SNOWFLAKE_PASSWORD: 'arn:aws:ssm:eu-west-1:123456789012:parameter/dbt/pw'}"
        )
    pairs: list[tuple[str, str]] = []
    for name, arn in value.items():
        where = field.at(str(name))
        if not isinstance(name, str) or not checks.ENV_NAME.fullmatch(name):
            where.bad("is not a valid environment variable name (letters, digits and _, not first a digit)")
            continue
        if name in SCHEDULER_VARIABLES:
            where.bad(f"dbt-scheduler sets {name} in every task itself: give the secret another name")
            continue
        if not isinstance(arn, str):
            where.bad(
                f"must be the ARN of an SSM parameter or Secrets Manager secret, got {checks.shown(arn)}"
            )
            continue
        try:
            parse_secret_arn(arn)
        except ValueError as exc:
            where.bad(str(exc))
            continue
        pairs.append((name, arn))
    return tuple(sorted(pairs))


def _kms_key(value: Any, field: checks.Field) -> str | None:
    if not isinstance(value, str):
        return field.bad(f"must be a KMS key ARN, got {checks.shown(value)}")
    try:
        return parse_kms_key_arn(value)
    except ValueError as exc:
        return field.bad(str(exc))


_COUNT = checks.whole(0, MAX_COUNT)
_IDS = checks.string_list("must be a list of ids")
_ENGINE = checks.choice(ENGINES, "{value!r} is not allowed: use docker or podman")

AWS = Section(
    "The `aws:` section",
    (
        Key(
            "region", "AWS region, e.g. `eu-west-1`.", STRING, checks.printable, required=True, since="0.2.0"
        ),
        _aws_string(
            "endpoint_url", "send every AWS call to another endpoint (moto, LocalStack); unset for real AWS."
        ),
        _aws_string(
            "cluster",
            "the ECS cluster (it must exist; bootstrap warns when it has no container instances).",
            "dbt",
        ),
        Key(
            "launch_type",
            "`EC2` or `FARGATE` (then `subnets`, optional `security_groups`, `assign_public_ip`).",
            {"type": "string", "pattern": "^(?i:ec2|fargate)$"},
            _launch_type,
            default="EC2",
            since="0.2.0",
        ),
        Key(
            "subnets",
            "FARGATE only: the task's subnets (awsvpc networking), at least one.",
            STRING_LIST,
            _IDS,
            since="0.2.0",
        ),
        Key("security_groups", "FARGATE only: the task's security groups.", STRING_LIST, _IDS, since="0.2.0"),
        Key(
            "assign_public_ip",
            "FARGATE only: give the task a public IP.",
            BOOLEAN,
            _aws_flag,
            default=False,
            since="0.2.0",
        ),
        _aws_string(
            "bucket",
            "S3 bucket for the env file and the run artifacts (created by bootstrap, public access blocked, "
            "SSE on).",
        ),
        Key(
            "env_file",
            "the local `.env` that bootstrap validates against ECS's rules and uploads.",
            STRING,
            _aws_path,
            since="0.2.0",
        ),
        _aws_string("env_file_key", "its S3 key (must end in `.env`).", "dbt-scheduler/dbt.env"),
        Key(
            "secrets",
            "variable name → the ARN of an SSM Parameter Store parameter (`arn:aws:ssm:REGION:ACCOUNT:"
            "parameter/NAME`) or a Secrets Manager secret (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:"
            "NAME`, optionally `:JSON-KEY:VERSION-STAGE:VERSION-ID`): the ECS agent injects each value "
            "into every ECS task, and bootstrap lets the execution role read exactly these. The "
            "recommended home of ECS secrets; name them `DBT_ENV_SECRET_*` so dbt masks them. See "
            "[ECS jobs: `aws.secrets`](#ecs-jobs-awssecrets).",
            {
                "type": "object",
                "propertyNames": {"pattern": f"^{checks.ENV_NAME.pattern}$"},
                "additionalProperties": {"type": "string", "pattern": "^arn:[^:]+:(ssm|secretsmanager):"},
            },
            _secrets,
            default={},
            since="0.3.0",
        ),
        Key(
            "kms_key",
            "the ARN of the customer managed KMS key the secrets are encrypted with "
            "(`arn:aws:kms:REGION:ACCOUNT:key/KEY-ID`, not an alias): the execution role gets "
            "`kms:Decrypt` on it. Leave it unset for the AWS managed keys (`aws/ssm`, "
            "`aws/secretsmanager`), which need no grant.",
            {"type": "string", "pattern": "^arn:[^:]+:kms:"},
            _kms_key,
            since="0.3.0",
        ),
        _aws_string(
            "artifacts_prefix",
            "where each run uploads its artifacts (`run_results.json` and `run_results.<i>.json` per "
            "command, `sources.json`/`sources.<i>.json`, `manifest.json`, `git_sha`): "
            "`s3://bucket/prefix/<job>/<run id>/`.",
            "dbt-scheduler/artifacts",
        ),
        _aws_string(
            "execution_role",
            "the task execution role bootstrap creates (IAM role name).",
            "dbt-scheduler-execution",
        ),
        _aws_string("task_role", "the task role bootstrap creates (IAM role name).", "dbt-scheduler-task"),
        _aws_string("ecr_repository", "the ECR repository bootstrap pushes the image to.", "dbt-scheduler"),
        Key(
            "image",
            "overrides what the task definition runs: a tag in the `ecr_repository` is resolved to its "
            "digest, `name@sha256:…` is kept, a tag elsewhere is kept with a warning (pin it by digest).",
            STRING,
            checks.printable,
            shown_default="the repository's `:latest` by digest",
            since="0.2.0",
        ),
        Key(
            "engine",
            "what bootstrap builds and pushes the image with: `docker` or `podman`.",
            _enum(ENGINES),
            _ENGINE,
            default="docker",
            since="0.2.0",
        ),
        _aws_string(
            "log_group", "CloudWatch Logs group of the tasks (awslogs driver).", "/ecs/dbt-scheduler"
        ),
        Key(
            "log_retention_days",
            "how long the log group keeps events.",
            _whole(0, MAX_COUNT),
            _COUNT,
            default=30,
            since="0.2.0",
        ),
        _aws_string("log_stream_prefix", "the awslogs stream prefix.", "dbt"),
        _aws_string("task_family", "the task definition's family.", "dbt-scheduler"),
        _aws_string("container_name", "the task definition's container.", "dbt"),
        Key("cpu", "the task's CPU units.", _whole(0, MAX_COUNT), _COUNT, default=1024, since="0.2.0"),
        Key("memory", "the task's memory (MiB).", _whole(0, MAX_COUNT), _COUNT, default=2048, since="0.2.0"),
        Key(
            "project_dir",
            "a local dbt project bootstrap writes a `profiles.yml` into when it has none.",
            STRING,
            _aws_path,
            since="0.2.0",
        ),
        Key(
            "poll_interval",
            "how often the ECS runner asks for the task's state; at least `1s`: ECS throttles "
            "`describe_tasks` per account and Region with a budget every caller shares (console, CLI, other "
            "tools), and a task's state changes over seconds.",
            DURATION,
            _poll_interval,
            default="10s",
            since="0.2.0",
        ),
        Key(
            "start_retries",
            "a task that failed to *start* (image pull, env-file download, no capacity) is retried this many "
            "times, the wait doubling each time. A dbt failure is never retried.",
            _whole(0, MAX_START_RETRIES),
            checks.whole(0, MAX_START_RETRIES),
            default=2,
            since="0.2.0",
        ),
        Key(
            "start_retry_backoff",
            "the wait before the first such retry.",
            DURATION_OR_ZERO,
            checks.duration_or_zero,
            default="30s",
            since="0.2.0",
        ),
    ),
)

DOCKER = Section(
    "The `docker:` section",
    (
        Key(
            "engine",
            "what runs the image: `docker` or `podman`.",
            _enum(ENGINES),
            _ENGINE,
            default="docker",
            since="0.2.0",
        ),
        Key(
            "image",
            "the image `runner: docker` jobs run (a job's `image` overrides it).",
            STRING,
            lambda value, field: (
                value
                if isinstance(value, str) and value
                else field.bad("must be an image name such as dbt-scheduler:latest")
            ),
            default="dbt-scheduler:latest",
            since="0.2.0",
        ),
        Key(
            "extra_args",
            "a list of arguments added to `run`, e.g. `[--network, host]`.",
            STRING_LIST,
            checks.string_list("must be a list of strings"),
            default=[],
            since="0.2.0",
        ),
    ),
    nullable=False,
)


# --------------------------------------------------------------------------- the top level

DEFAULT_STATE_DIR = "state"


def _state_dir(value: Any, field: checks.Field) -> Any:
    return checks.path(value, field)


TOP_LEVEL = Section(
    "Top level",
    (
        Key(
            "jobs",
            "mapping of job name → job settings. Names: letters, digits, `_ - .`, up to 64 characters.",
            {
                "type": "object",
                "propertyNames": {"pattern": f"^{JOB_NAME.pattern}$"},
                "additionalProperties": {"anyOf": [_object(JOB), {"type": "null"}]},
            },
            required=True,
            section=JOB,
        ),
        Key(
            "defaults",
            "job settings merged into every job. A key the job writes wins, even `false` or `0`; a key the "
            "job leaves out comes from `defaults`; a job writing `null` goes back to the built-in default. "
            "`env` maps merge key by key.",
            {"type": "object"},  # schema.py fills it from JOB, without NOT_IN_DEFAULTS
            default={},
            section=JOB,
        ),
        Key(
            "state_dir",
            "where history (`history.db`), run folders (`runs/<job>/<run id>/`), locks and dbt's per-job "
            "parse cache live.",
            STRING,
            _state_dir,
            default=DEFAULT_STATE_DIR,
        ),
        Key(
            "max_parallel",
            "runs at the same time; more due at once wait for a free slot in the daemon's queue, oldest "
            "first (see [Reliability](#reliability)).",
            _whole(1, MAX_PARALLEL),
            checks.whole(1, MAX_PARALLEL),
            default=4,
        ),
        Key(
            "shutdown_grace",
            "on SIGTERM, how long running jobs may go on before they are cancelled (and recorded as "
            "cancelled).",
            DURATION_OR_ZERO,
            checks.duration_or_zero,
            default="30s",
        ),
        Key(
            "retention",
            "how long runs are kept: see [Retention](#retention). A job's own `retention:` overrides it "
            "key by key (`defaults:` does not take it: this is every job's default already).",
            _object(RETENTION),
            checks.retention,
            shown_default="`{keep_days: 90, keep_failed_work: 5}`",
            since="0.3.0",
            section=RETENTION,
        ),
        Key(
            "aws",
            "where ECS jobs run and what `bootstrap` provisions: see [The `aws:` section](#the-aws-section). "
            "Required by any `runner: ecs` job.",
            _object(AWS, required=("region",)),
            since="0.2.0",
            section=AWS,
        ),
        Key(
            "docker",
            "how the docker runner starts the image: see [The `docker:` section](#the-docker-section).",
            _object(DOCKER),
            shown_default="see below",
            since="0.2.0",
            section=DOCKER,
        ),
        Key(
            "notifications",
            "alert channels and the rules that route events to them: see [Alerts](#alerts).",
            _object(NOTIFICATIONS),
            _notifications,
            since="0.3.0",
            section=NOTIFICATIONS,
        ),
        Key(
            "heartbeat",
            "a URL pinged while the daemon is alive (`{url, every}`, default every `5m`), so a dead daemon "
            "or box is noticed from outside.",
            {
                "anyOf": [
                    _URL_SCHEMA,
                    {
                        "type": "object",
                        "properties": {"url": _URL_SCHEMA, "every": DURATION},
                        "required": ["url"],
                        "additionalProperties": False,
                    },
                ]
            },
            notify_checks.heartbeat,
            since="0.3.0",
        ),
        Key(
            "web",
            "the web UI and API, who may use them (roles, tokens, an SSO proxy), and metrics: see "
            "[The `web:` section](#the-web-section). Off unless configured.",
            _object(WEB),
            _web,
            since="0.3.0",
            section=WEB,
        ),
    ),
)

SECTIONS: tuple[Section, ...] = (
    TOP_LEVEL,
    JOB,
    RETENTION,
    AWS,
    DOCKER,
    NOTIFICATIONS,
    RULE,
    *CHANNEL_TYPES.values(),
    WEB,
    PROXY_HEADERS,
)
