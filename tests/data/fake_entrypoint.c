/*
 * fake_entrypoint.c — stands in for docker/run_commands.sh in the docker runner's
 * tests. Built with `gcc -static` into a FROM-scratch image (no registry is
 * reachable, so no base image; see tests/podman_helpers.py).
 *
 * Prints the variables the tests check, one `NAME=value` line each (DBT_COMMANDS
 * keeps its line breaks), a GIT_SHA marker, the uid it runs as and whether
 * /project can be written; writes $FAKE_RUN_RESULTS (a JSON text) to
 * $DBT_ARTIFACTS_DIR/run_results.json when set; prints $FAKE_ERROR as an ERROR
 * marker when set; then exits with $FAKE_EXIT (default 0).
 * FAKE_MODE=sleep prints SLEEPING and sleeps for ten minutes instead: with the
 * container's init (`run --init`) forwarding SIGTERM, `stop` ends it at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *get(const char *name) {
    const char *value = getenv(name);
    return value ? value : "<unset>";
}

int main(void) {
    static const char *shown[] = {
        "DBT_COMMANDS", "DBT_SCHEDULER_JOB", "DBT_SCHEDULER_RUN_ID", "DBT_ARTIFACTS_DIR",
        "DBT_PROJECT_DIR", "DBT_PROFILES_DIR", "DBT_PARTIAL_PARSE_CACHE", "DBT_TARGET",
        "DBT_SEND_ANONYMOUS_USAGE_STATS", "FROM_ENV_FILE", "FROM_JOB_ENV", "TRICKY",
        "DBT_ENV_SECRET_TOKEN", "ENGINE_ONLY",
    };
    setvbuf(stdout, NULL, _IOLBF, 0);  /* a pipe: line by line, so the runner streams it */

    if (strcmp(get("FAKE_MODE"), "sleep") == 0) {
        printf("SLEEPING\n");
        sleep(600);
        return 0;
    }
    printf("[run_commands] GIT_SHA 0123456789abcdef0123456789abcdef01234567\n");
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        printf("%s=%s\n", shown[i], get(shown[i]));
    }
    printf("UID=%d\n", (int)getuid());
    printf("PROJECT_WRITABLE=%s\n", access("/project", F_OK) != 0 ? "absent"
                                    : access("/project", W_OK) == 0 ? "yes" : "no");

    const char *results = getenv("FAKE_RUN_RESULTS");
    const char *dir = getenv("DBT_ARTIFACTS_DIR");
    if (results && dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/run_results.json", dir);
        FILE *out = fopen(path, "w");
        if (!out || fputs(results, out) < 0 || fclose(out) != 0) {
            perror(path);
            return 3;
        }
    }
    if (getenv("FAKE_ERROR")) {
        printf("[run_commands] ERROR %s\n", getenv("FAKE_ERROR"));
    }
    return atoi(getenv("FAKE_EXIT") ? getenv("FAKE_EXIT") : "0");
}
