#!/usr/bin/env bash
# run_commands.sh — the one entry point every runner (local process, docker, ECS)
# executes: fetch a dbt project, install its packages, run its dbt commands, keep
# the artifacts. Needs only bash, coreutils and git (no python of its own: dbt
# brings one, and the image runs this too).
#
# Environment in (all optional):
#   DBT_GIT_URL        repository to clone; unset = use DBT_PROJECT_DIR
#   DBT_GIT_REF        branch, tag or full 40-hex commit SHA; unset = remote default branch
#   DBT_GIT_SUBDIR     the dbt project's folder inside the repository
#   DBT_ENV_SECRET_GIT_TOKEN  https token, sent as an http.extraHeader through git's
#                      GIT_CONFIG_* environment: never on a command line, never printed
#   DBT_PROJECT_DIR    the project when DBT_GIT_URL is unset (default: the current
#                      directory if it holds a dbt_project.yml)
#   DBT_RUN_DIR        this run's work area (created; default mktemp -d): the clone,
#                      target/, logs/ and the dev DuckDB file of the example live here
#   DBT_COMMANDS       newline-separated dbt commands (default "dbt build"); blank
#                      lines and lines starting with # are ignored
#   DBT_TARGET, DBT_PROFILES_DIR  read by dbt itself; DBT_PROFILES_DIR defaults to the
#                      project folder when it holds a profiles.yml
#   DBT_ARTIFACTS_DIR  where run_results.json and manifest.json are copied at the end
#   DBT_PARTIAL_PARSE_CACHE  folder keeping partial_parse.msgpack between runs; it is
#                      reused only by a run whose project lives at the same path
#   DBT_GIT_CHECKOUT_DIR  the job's persistent checkout (with DBT_GIT_URL): updated by
#                      fetch + checkout of the exact commit + clean on every run, so the
#                      project root stays the same and dbt's partial parse stays valid.
#                      A run that finds it locked by another run of the job (overlap:
#                      allow) clones privately into DBT_RUN_DIR and skips the cache.
#   DBT_ARTIFACTS_S3_URI  s3://bucket/prefix/ that run_results.json and manifest.json
#                      are uploaded to at the end (upload_artifacts.py, next to this
#                      script; needs boto3); a failed upload is a WARNING only
#   DBT_PYTHON         the python3 for that upload (default: the one next to dbt,
#                      else python3 on PATH)
#   DBT_ALLOW_FAILURE  space-separated numbers (1-based) of the commands whose failure
#                      does not stop the run (e.g. "1" for a `dbt source freshness`
#                      before `dbt build`); the run's exit code ignores them
#   DBT_SCHEDULER_JOB  the job's name, only to name its settings in error messages
# Relative paths are taken from the directory the script starts in.
#
# Artifacts: DBT_ARTIFACTS_DIR gets manifest.json, run_results.json (written by the
# last command that ran, absent if it died before writing one),
# run_results.<i>.json for each command i that wrote one, sources.json and
# sources.<i>.json likewise for `dbt source freshness`, and git_sha (the commit).
#
# Output: dbt's own output, plus marker lines the Python runner parses:
#   [run_commands] STEP fetch: <text>        [run_commands] GIT_SHA <40-hex sha>
#   [run_commands] STEP deps: <text>         [run_commands] STEP command <i>/<n>: <command>
#   [run_commands] STEP artifacts: <text>    [run_commands] ERROR <what failed and the fix>
#   [run_commands] EXIT <code>               (always the last line)
#
# Exit codes: the first failing dbt command's own code (1 failure, 2 error), or
#   10 bad configuration, 11 fetching the code failed, 12 dbt deps failed,
#   127 dbt not on PATH, 130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP). On any of
#   those the running dbt gets SIGINT (it cancels its warehouse queries), SIGTERM
#   only after DBT_INTERRUPT_GRACE seconds (default 15).
#
# Never add `set -x`: it would print the token and every secret in the environment.
set -euo pipefail

# One stream, in order: the runner stores stdout as the run's log.
exec 2>&1

readonly EXIT_CONFIG=10 EXIT_FETCH=11 EXIT_DEPS=12 EXIT_NO_DBT=127
# Found before any cd: upload_artifacts.py lives beside this script.
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_DIR

say() { printf '[run_commands] %s\n' "$*"; }

# Where the setting lives in jobs.yaml, for error messages: jobs.<job>.git.ref.
# The scheduler passes the job's name as DBT_SCHEDULER_JOB.
setting() { printf 'jobs.%s.%s' "${DBT_SCHEDULER_JOB:-<job>}" "$1"; }

# Prints the ERROR marker and exits; the EXIT trap prints the last line.
fail() {
  local code=$1
  shift
  say "ERROR $*"
  exit "$code"
}

trap 'rc=$?; say "EXIT $rc"; exit "$rc"' EXIT

# --- children and signals -----------------------------------------------------
# Long steps run as a background child + `wait`: bash runs a trap only once a
# foreground command has finished, so `docker stop` / ECS StopTask (SIGTERM to
# PID 1, which has no default handlers) would otherwise wait for the kill -9.
#
# A non-interactive bash starts `cmd &` with SIGINT ignored, and Python (dbt) then
# installs no KeyboardInterrupt handler: dbt cancels its warehouse queries only on
# SIGINT, so a child that cannot get one dies on SIGTERM with its queries still
# running (and billing). `env --default-signal=INT` (coreutils >= 8.31) gives the
# child SIGINT back before it starts.
if env --default-signal=INT true 2>/dev/null; then
  default_sigint=(env --default-signal=INT)
else
  default_sigint=()
fi
# Seconds dbt gets after SIGINT to cancel its queries and exit, before SIGTERM. Keep
# it under the runner's own grace (docker stop -t, the ECS task's stopTimeout, 30 s
# by default) so dbt's cancellation, not a SIGKILL, ends the run.
readonly INTERRUPT_GRACE=${DBT_INTERRUPT_GRACE:-15}
child=""
run_child() {
  local rc=0
  if declare -F -- "$1" >/dev/null; then
    "$@" &  # one of our functions (git_remote): nothing to cancel cleanly
  else
    "${default_sigint[@]}" "$@" &
  fi
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# SIGINT to the child (dbt's Ctrl-C: it cancels its queries and prints "Exited
# because of keyboard interrupt"), SIGTERM if it is still there after the grace.
# kill -0 fails once bash has reaped the child, so the loop ends when dbt does.
stop_child() {
  local tenths=$((INTERRUPT_GRACE * 10))
  kill -INT "$child" 2>/dev/null || return 0
  while ((tenths-- > 0)) && kill -0 "$child" 2>/dev/null; do sleep 0.1; done
  if kill -0 "$child" 2>/dev/null; then
    say "ERROR dbt did not stop within ${INTERRUPT_GRACE}s of SIGINT: sending SIGTERM"
    kill -TERM "$child" 2>/dev/null || true
  fi
  wait "$child" 2>/dev/null || true
}

post_run_done=0
# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
  local name=$1 code=$2
  trap - TERM INT HUP
  say "ERROR received SIG$name: stopping dbt; the run was cancelled"
  if [[ -n $child ]]; then stop_child; fi
  if [[ ${commands_started:-0} == 1 && $post_run_done == 0 ]]; then
    post_run
  fi
  exit "$code"
}
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT
trap 'on_signal HUP 129' HUP

# --- DBT_COMMANDS parsing -------------------------------------------------------
# Each line is split into words like a shell would for quoting ('…', "…", \x),
# but nothing is expanded or executed: no $VAR, no $(…), no globs, braces or ~.
# Shell operators are refused rather than silently passed to dbt as words.
# Sets WORDS, or PARSE_ERROR and returns 1.
split_words() {
  local line=$1 n=${#1} i=0 c next word="" in_word=0 quote=""
  WORDS=()
  PARSE_ERROR=""
  while ((i < n)); do
    c=${line:i:1}
    if [[ $quote == "'" ]]; then
      if [[ $c == "'" ]]; then quote=""; else word+=$c; fi
    elif [[ $quote == '"' ]]; then
      case $c in
        '"') quote="" ;;
        "\\")
          next=${line:i+1:1}
          if [[ $next == '"' || $next == "\\" || $next == '$' || $next == '`' ]]; then
            word+=$next
            i=$((i + 1))
          else
            word+=$c
          fi
          ;;
        '$' | '`')
          PARSE_ERROR="'$c' inside double quotes: nothing is expanded here; use single quotes for a literal '$c', or env_var() in dbt to read the environment"
          return 1
          ;;
        *) word+=$c ;;
      esac
    else
      case $c in
        ' ' | $'\t')
          if ((in_word)); then
            WORDS+=("$word")
            word=""
            in_word=0
          fi
          ;;
        "'" | '"')
          quote=$c
          in_word=1
          ;;
        "\\")
          if ((i + 1 >= n)); then
            PARSE_ERROR="trailing backslash"
            return 1
          fi
          word+=${line:i+1:1}
          i=$((i + 1))
          in_word=1
          ;;
        '#')
          # A comment, as in a shell, when it starts a word.
          if ((!in_word)); then break; fi
          word+=$c
          ;;
        '$' | '`' | ';' | '&' | '|' | '<' | '>' | '(' | ')')
          PARSE_ERROR="shell syntax '$c' is not supported (one dbt command per line, nothing expanded): quote it if it is part of an argument"
          return 1
          ;;
        *)
          word+=$c
          in_word=1
          ;;
      esac
    fi
    i=$((i + 1))
  done
  if [[ -n $quote ]]; then
    PARSE_ERROR="unterminated $quote quote"
    return 1
  fi
  if ((in_word)); then WORDS+=("$word"); fi
  return 0
}

# Validates every line before anything is fetched, so a typo fails in a second.
COMMANDS=()
load_commands() {
  local raw=${DBT_COMMANDS:-dbt build} line lineno=0
  while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    # Trim surrounding blanks (YAML block scalars keep indentation and trailing spaces).
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    [[ -z $line || $line == '#'* ]] && continue
    if ! split_words "$line"; then
      fail "$EXIT_CONFIG" "DBT_COMMANDS line $lineno cannot be parsed ($PARSE_ERROR): $line (fix $(setting commands))"
    fi
    if ((${#WORDS[@]} == 0)) || [[ ${WORDS[0]} != dbt ]]; then
      fail "$EXIT_CONFIG" "DBT_COMMANDS line $lineno does not start with 'dbt': $line (each line must be one dbt command, e.g. dbt build --select tag:nightly; fix $(setting commands))"
    fi
    COMMANDS+=("$line")
  done <<<"$raw"
  if ((${#COMMANDS[@]} == 0)); then
    fail "$EXIT_CONFIG" "DBT_COMMANDS has no command (only blank or comment lines): give at least one dbt command or leave it unset for dbt build"
  fi
}

# --- git ------------------------------------------------------------------------
# scheme://CREDENTIAL@host/… → scheme://host/… : what we print instead of the URL. What a
# credential in a URL is has one definition, lib/secrets.py's URL_USERINFO and
# is_url_credential (a test compares this function with it): any userinfo of an http(s)
# URL, and a userinfo holding a password (`user:pw@`) for any scheme.
display_url() {
  local url=$1 scheme
  if [[ $url =~ ^([A-Za-z][A-Za-z0-9+.-]*://)([^/@[:space:]]+)@(.*)$ ]]; then
    scheme=${BASH_REMATCH[1],,}
    scheme=${scheme%://}
    scheme=${scheme##*+} # git+https → https
    if [[ $scheme == http || $scheme == https || ${BASH_REMATCH[2]} == *:* ]]; then
      printf '%s%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}"
      return
    fi
  fi
  printf '%s' "$url"
}

# git with the remote URL and the token passed as GIT_CONFIG_* environment
# (git ≥ 2.31): a URL or header on the command line shows in `ps` and
# /proc/<pid>/cmdline, and `git remote add` would write it into .git/config.
# The header is scoped to the remote's scheme://host/ so a redirect elsewhere
# does not carry it. It exports and execs: call it only as its own process
# (run_child's background job), never in the script's shell.
# shellcheck disable=SC2317  # invoked through run_child
git_remote() {
  local n header
  n=${GIT_CONFIG_COUNT:-0}
  export "GIT_CONFIG_KEY_$n=remote.origin.url" "GIT_CONFIG_VALUE_$n=$DBT_GIT_URL"
  n=$((n + 1))
  if [[ -n ${DBT_ENV_SECRET_GIT_TOKEN:-} && $DBT_GIT_URL =~ ^(https?://)([^/@]*@)?([^/?#]+) ]]; then
    header="Authorization: Basic $(printf 'x-access-token:%s' "$DBT_ENV_SECRET_GIT_TOKEN" | base64 -w0)"
    export "GIT_CONFIG_KEY_$n=http.${BASH_REMATCH[1]}${BASH_REMATCH[3]}/.extraHeader" "GIT_CONFIG_VALUE_$n=$header"
    n=$((n + 1))
  fi
  # Never wait for a password prompt nobody can answer.
  export GIT_CONFIG_COUNT=$n GIT_TERMINAL_PROMPT=0
  exec git "$@"
}

# Prints a git log file with the URL's userinfo and the token taken out.
print_git_log() {
  local text shown
  text=$(<"$1")
  [[ -z $text ]] && return 0
  shown=$(display_url "$DBT_GIT_URL")
  text=${text//"$DBT_GIT_URL"/"$shown"}
  if [[ -n ${DBT_ENV_SECRET_GIT_TOKEN:-} ]]; then
    text=${text//"$DBT_ENV_SECRET_GIT_TOKEN"/"*****"}
  fi
  printf '%s\n' "$text"
}

# Shallow fetch of one ref into the job's checkout (or $DBT_RUN_DIR/project). `git clone --branch`
# takes branches and tags but not commit SHAs; init + fetch <ref> + checkout
# FETCH_HEAD takes all three (a SHA needs a server that allows fetching it:
# protocol v2 servers such as GitHub, GitLab and file:// do).
# The job's persistent checkout, when this run can have it to itself: flock on a file
# beside it, held (fd inherited by dbt) until the run ends, so a second run of the
# job at the same time never shares the work tree. Sets CHECKOUT to the folder to use.
# Why persistent: dbt's partial_parse.msgpack stores absolute paths (seed files,
# the project root); a fresh clone per run moved the root, and dbt looked for the
# seeds of the first run's deleted clone (issue 6).
checkout_dir() {
  local dir=${DBT_GIT_CHECKOUT_DIR:-}
  if [[ -n $dir ]] && command -v flock >/dev/null && mkdir -p -- "${dir%/*}" &&
    exec {checkout_lock}>>"$dir.lock" && flock -n "$checkout_lock"; then
    CHECKOUT=$dir
    return 0
  fi
  if [[ -n $dir ]]; then
    say "STEP fetch: the job's checkout $dir is in use by another run of this job: cloning into a private folder (no partial-parse reuse this time)"
    DBT_PARTIAL_PARSE_CACHE=""
  fi
  CHECKOUT=$DBT_RUN_DIR/project
}

clone_project() {
  local ref=${DBT_GIT_REF:-} shown dest log rc=0 sha
  shown=$(display_url "$DBT_GIT_URL")
  log=$DBT_RUN_DIR/git.log
  if [[ $ref == -* ]]; then
    fail "$EXIT_CONFIG" "DBT_GIT_REF '$ref' starts with '-': give a branch, tag or full commit SHA ($(setting git.ref))"
  fi
  if [[ -n ${DBT_GIT_SUBDIR:-} && ($DBT_GIT_SUBDIR == /* || /$DBT_GIT_SUBDIR/ == */../*) ]]; then
    fail "$EXIT_CONFIG" "DBT_GIT_SUBDIR '$DBT_GIT_SUBDIR' must be a relative path inside the repository without '..' ($(setting git.subdir))"
  fi
  command -v git >/dev/null || fail "$EXIT_FETCH" "git is not on PATH: install git in the image or unset DBT_GIT_URL"
  # Not in a $(…) subshell: the lock's descriptor must stay open in this shell.
  checkout_dir
  dest=$CHECKOUT
  say "STEP fetch: git fetch --depth 1 $shown ${ref:-(default branch)} into $dest"

  # A persistent checkout is reused; a broken one (or a private folder) starts afresh.
  if ! git -C "$dest" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    [[ $(git -C "$dest" rev-parse --show-toplevel 2>/dev/null) != "$(cd -- "$dest" && pwd -P)" ]]; then
    { rm -rf -- "$dest" && mkdir -p -- "$dest" && git -C "$dest" -c init.defaultBranch=run init -q; } ||
      fail "$EXIT_FETCH" "cannot create a fresh git repository in $dest: check it is writable"
  fi
  if ! run_child git_remote -C "$dest" fetch --quiet --depth 1 --no-tags origin "${ref:-HEAD}" >"$log" 2>&1; then
    print_git_log "$log"
    if grep -q "couldn't find remote ref\|not our ref" "$log"; then
      if [[ -z $ref ]]; then
        fail "$EXIT_FETCH" "$shown has no default branch (remote HEAD): set DBT_GIT_REF ($(setting git.ref))"
      fi
      fail "$EXIT_FETCH" "git fetch of ref '$ref' from $shown failed: no such branch, tag or commit; check DBT_GIT_REF ($(setting git.ref); a commit needs its full 40-hex SHA)"
    fi
    fail "$EXIT_FETCH" "git fetch of ${ref:-the default branch} from $shown failed: check DBT_GIT_URL ($(setting git.url)), the network and DBT_ENV_SECRET_GIT_TOKEN"
  fi
  print_git_log "$log"
  # -f and clean -ffdx: the tree is exactly the commit, whatever the last run left
  # (dbt_packages/, a half-written file of a killed run); target/ lives in DBT_RUN_DIR.
  { git -C "$dest" -c advice.detachedHead=false checkout -q -f --detach FETCH_HEAD &&
    git -C "$dest" clean -q -ffdx; } >"$log" 2>&1 || rc=$?
  if ((rc != 0)); then
    print_git_log "$log"
    fail "$EXIT_FETCH" "git checkout of ${ref:-the default branch} from $shown failed (exit $rc)"
  fi
  sha=$(git -C "$dest" rev-parse HEAD)
  say "GIT_SHA $sha"
  GIT_SHA=$sha

  PROJECT_DIR=$dest${DBT_GIT_SUBDIR:+/$DBT_GIT_SUBDIR}
  if [[ ! -f $PROJECT_DIR/dbt_project.yml ]]; then
    fail "$EXIT_FETCH" "no dbt_project.yml in '${DBT_GIT_SUBDIR:-.}' of $shown at $sha: check DBT_GIT_SUBDIR ($(setting git.subdir): the project folder inside the repository)"
  fi
}

use_local_project() {
  local dir=${DBT_PROJECT_DIR:-$PWD} sha
  say "STEP fetch: DBT_GIT_URL not set, using the project in $dir"
  if [[ ! -f $dir/dbt_project.yml ]]; then
    fail "$EXIT_CONFIG" "no dbt_project.yml in '$dir': set DBT_PROJECT_DIR ($(setting project_dir)) to a dbt project, or DBT_GIT_URL ($(setting git.url)) to clone one"
  fi
  PROJECT_DIR=$(cd -- "$dir" && pwd -P)
  # The commit the files came from, if they are a git checkout (may be dirty).
  if command -v git >/dev/null && sha=$(git -C "$PROJECT_DIR" rev-parse -q --verify HEAD 2>/dev/null); then
    say "GIT_SHA $sha"
    GIT_SHA=$sha
  fi
}

# --- after the commands -----------------------------------------------------------
# Copies $1 to $2 via a temporary file in $2's folder and a rename, so a reader
# (or a concurrent run) never sees half a file. mktemp creates files 0600: give
# the copy the mode a plain cp would, so a daemon running as another user than
# the container can read it.
atomic_copy() {
  local tmp
  tmp=$(mktemp "$(dirname -- "$2")/.$(basename -- "$2").XXXXXX") || return 1
  if cp -- "$1" "$tmp" && chmod "$(printf '%o' $((0666 & ~$(umask))))" "$tmp" && mv -f -- "$tmp" "$2"; then
    return 0
  fi
  rm -f -- "$tmp"
  return 1
}

# The cache is keyed on the project root: dbt's file keeps absolute paths, so it is
# valid only for a project at the same place (the file `project_root` beside it).
save_partial_parse() {
  local src=$DBT_TARGET_PATH/partial_parse.msgpack
  [[ -n ${DBT_PARTIAL_PARSE_CACHE:-} && -f $src ]] || return 0
  if ! { mkdir -p -- "$DBT_PARTIAL_PARSE_CACHE" &&
    atomic_copy "$src" "$DBT_PARTIAL_PARSE_CACHE/partial_parse.msgpack" &&
    printf '%s\n' "$PROJECT_DIR" >"$DBT_PARTIAL_PARSE_CACHE/project_root"; }; then
    say "STEP artifacts: WARNING could not save partial_parse.msgpack to $DBT_PARTIAL_PARSE_CACHE (the next run parses from scratch)"
  fi
}

copy_artifacts() {
  local dest=${DBT_ARTIFACTS_DIR:-} f copied=()
  if [[ -z $dest ]]; then
    say "STEP artifacts: DBT_ARTIFACTS_DIR not set; artifacts stay in $DBT_TARGET_PATH"
    return 0
  fi
  say "STEP artifacts: copying run_results.json and manifest.json to $dest"
  if ! mkdir -p -- "$dest"; then
    say "STEP artifacts: WARNING cannot create DBT_ARTIFACTS_DIR $dest"
    return 0
  fi
  for f in "$DBT_TARGET_PATH"/{run_results,sources}.json "$DBT_TARGET_PATH"/{run_results,sources}.*.json \
    "$DBT_TARGET_PATH"/manifest.json "$DBT_TARGET_PATH"/git_sha; do
    [[ -f $f ]] || continue
    if atomic_copy "$f" "$dest/${f##*/}"; then
      copied+=("${f##*/}")
    else
      say "STEP artifacts: WARNING could not copy ${f##*/} to $dest"
    fi
  done
  # dbt may exit before writing run_results.json (dbt-core #5625): say so plainly.
  say "STEP artifacts: copied ${copied[*]:-nothing (dbt wrote no artifacts)}"
}

# The python3 beside dbt is the one with dbt's packages (boto3 in the image).
artifacts_python() {
  local dbt_path
  if [[ -n ${DBT_PYTHON:-} ]]; then
    printf '%s' "$DBT_PYTHON"
  elif dbt_path=$(command -v dbt) && [[ -x ${dbt_path%/*}/python3 ]]; then
    printf '%s' "${dbt_path%/*}/python3"
  else
    printf 'python3'
  fi
}

# dbt's result is what counts: a failed upload is reported, never the run's exit code.
upload_artifacts() {
  local uri=${DBT_ARTIFACTS_S3_URI:-} uploader python out rc=0
  [[ -n $uri ]] || return 0
  uploader=$SCRIPT_DIR/upload_artifacts.py
  python=$(artifacts_python)
  say "STEP artifacts: uploading to $uri"
  if [[ ! -f $uploader ]]; then
    say "STEP artifacts: WARNING upload to $uri skipped: $uploader is missing"
    return 0
  fi
  out=$("$python" "$uploader" "$DBT_TARGET_PATH" "$uri" 2>&1) || rc=$?
  if [[ -n $out ]]; then printf '%s\n' "$out"; fi
  if ((rc != 0)); then
    say "STEP artifacts: WARNING upload to $uri failed (exit $rc, $python): ${out##*$'\n'}"
  fi
  return 0
}

post_run() {
  post_run_done=1
  save_partial_parse
  copy_artifacts
  upload_artifacts
}

# Relative to where we started: the commands run in the project folder.
absolute() { if [[ $1 == /* ]]; then printf '%s' "$1"; else printf '%s/%s' "$PWD" "$1"; fi; }

# --- main ---------------------------------------------------------------------------
load_commands
for name in DBT_ARTIFACTS_DIR DBT_PARTIAL_PARSE_CACHE DBT_GIT_CHECKOUT_DIR DBT_PROFILES_DIR; do
  if [[ -n ${!name:-} ]]; then export "$name=$(absolute "${!name}")"; fi
done
# A relative repository path would be read from inside the clone: anchor it here.
if [[ -n ${DBT_GIT_URL:-} && $DBT_GIT_URL == .* ]]; then DBT_GIT_URL=$(absolute "$DBT_GIT_URL"); fi

command -v dbt >/dev/null ||
  fail "$EXIT_NO_DBT" "dbt is not on PATH ($PATH): install dbt-core and an adapter (requirements-dbt.txt) or put its bin folder on PATH"

if [[ -z ${DBT_RUN_DIR:-} ]]; then
  DBT_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dbt-run.XXXXXX") ||
    fail "$EXIT_CONFIG" "cannot create a temporary run folder in ${TMPDIR:-/tmp}: set DBT_RUN_DIR"
fi
DBT_RUN_DIR=$(mkdir -p -- "$DBT_RUN_DIR" && cd -- "$DBT_RUN_DIR" && pwd -P) ||
  fail "$EXIT_CONFIG" "cannot create DBT_RUN_DIR '$DBT_RUN_DIR': check it is writable"
export DBT_RUN_DIR
# run_results.json is overwritten by every invocation and concurrent runs sharing
# target/ corrupt partial_parse.msgpack: each run gets its own target/ and logs/
# (dbt reads both variables; they override target-path/log-path in dbt_project.yml).
export DBT_TARGET_PATH=$DBT_RUN_DIR/target DBT_LOG_PATH=$DBT_RUN_DIR/logs
# No network on the runners; a project flag or the caller may still say otherwise.
export DBT_SEND_ANONYMOUS_USAGE_STATS=${DBT_SEND_ANONYMOUS_USAGE_STATS:-false}

# 1. fetch
PROJECT_DIR="" GIT_SHA=""
if [[ -n ${DBT_GIT_URL:-} ]]; then clone_project; else use_local_project; fi
# dbt reads DBT_PROJECT_DIR too: point it at the project we are about to run.
export DBT_PROJECT_DIR=$PROJECT_DIR
if [[ -z ${DBT_PROFILES_DIR:-} && -f $PROJECT_DIR/profiles.yml ]]; then
  export DBT_PROFILES_DIR=$PROJECT_DIR
fi
# dbt finds the project through DBT_PROJECT_DIR; the working directory is the run's
# own work area, so relative paths in profiles.yml (a DuckDB file) land there. That
# keeps the rendered profile identical from run to run, which dbt's partial parsing
# requires (it hashes the connection values into partial_parse.msgpack).
cd -- "$DBT_RUN_DIR"

# 2. deps — `dbt build` does not install packages, it fails on a missing one.
if [[ -f $PROJECT_DIR/packages.yml || -f $PROJECT_DIR/dependencies.yml ]]; then
  say "STEP deps: dbt deps"
  rc=0
  run_child dbt deps || rc=$?
  if ((rc != 0)); then
    fail "$EXIT_DEPS" "dbt deps failed (exit $rc): check packages.yml / dependencies.yml and that the package hosts are reachable"
  fi
else
  say "STEP deps: skipped (no packages.yml or dependencies.yml)"
fi

# 3. commands, in order, stopping at the first failure.
mkdir -p -- "$DBT_TARGET_PATH"
if [[ -n ${DBT_PARTIAL_PARSE_CACHE:-} && -f $DBT_PARTIAL_PARSE_CACHE/partial_parse.msgpack &&
  $(cat -- "$DBT_PARTIAL_PARSE_CACHE/project_root" 2>/dev/null) == "$PROJECT_DIR" ]]; then
  # dbt checks the file against the project's files, profile, vars and its version
  # and re-parses what differs; it does not check the project root (hence the key).
  cp -- "$DBT_PARTIAL_PARSE_CACHE/partial_parse.msgpack" "$DBT_TARGET_PATH/" || true
fi
# A reused DBT_RUN_DIR (a retry) must not hand the last attempt's files on as ours.
rm -f -- "$DBT_TARGET_PATH"/{run_results,sources}*.json "$DBT_TARGET_PATH/manifest.json"
# The commit travels with the artifacts (S3 for ECS), not only in the log.
if [[ -n ${GIT_SHA:-} ]]; then printf '%s\n' "$GIT_SHA" >"$DBT_TARGET_PATH/git_sha"; fi
commands_started=1
rc=0
total=${#COMMANDS[@]}
for ((i = 0; i < total; i++)); do
  split_words "${COMMANDS[i]}"
  say "STEP command $((i + 1))/$total: ${COMMANDS[i]}"
  # Each invocation overwrites run_results.json, and one that dies early writes
  # none (dbt-core #5625): remove the previous one so a stale file is never taken
  # for this command's, and keep each command's copy as run_results.<i>.json.
  rm -f -- "$DBT_TARGET_PATH/run_results.json" "$DBT_TARGET_PATH/sources.json"
  run_child "${WORDS[@]}" || rc=$?
  for f in run_results sources; do
    if [[ -f $DBT_TARGET_PATH/$f.json ]]; then
      cp -- "$DBT_TARGET_PATH/$f.json" "$DBT_TARGET_PATH/$f.$((i + 1)).json" || true
    fi
  done
  if ((rc != 0)) && [[ " ${DBT_ALLOW_FAILURE:-} " == *" $((i + 1)) "* ]]; then
    say "STEP command $((i + 1))/$total: WARNING failed (exit $rc) but allowed to fail: going on"
    rc=0
    continue
  fi
  ((rc == 0)) || break
done

# 4. artifacts, also after a failure: that is when they are wanted most.
post_run
exit "$rc"
