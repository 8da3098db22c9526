/* raft_sim: runs the deterministic cluster simulator over many seeds.
 *
 *   raft_sim --seeds N [--start S] [--steps K] [--nodes 3|5|7] [--membership]
 *   raft_sim --seed S [-v]                  one seed, transcript with -v
 *   raft_sim --determinism --seeds N        every seed twice, transcripts compared
 *   raft_sim --mutation NAME --seeds N      expect a failure: exit 0 once one is found
 *
 * Exit status: 0 when every seed passed (or, with --mutation, when the
 * mutation was caught), 1 otherwise, 2 on bad usage. With ST_SANITIZED=1 in
 * the environment (the ASan+UBSan CI build) --seeds is divided by 20, to no
 * less than --sanitized-min (default 100), and the run says so: the release
 * build runs every seed, the sanitizers need only a broad slice to find
 * memory and undefined-behaviour errors, and they run about 10x slower. */
#include "sim.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t cur_seed;
static struct sim_options cur_opt;
static uint32_t cur_nodes;
static uint64_t cur_run, cur_steps; /* seeds started, steps of the seeds finished */

/* on_crash runs as a SIGSEGV/SIGABRT handler and calls stdio: not
 * async-signal-safe, deliberately. The process is dying; printing the
 * transcript and the command that reproduces the seed is worth the risk of a
 * handler that deadlocks on stdio's lock (the ctest timeout then ends it). */
// NOLINTBEGIN(bugprone-signal-handler,cert-sig30-c)
static void repro(char *buf, size_t cap, uint64_t seed, const struct sim_options *o, uint32_t nodes)
{
    snprintf(buf, cap, "raft_sim --seed %" PRIu64 " --nodes %u --steps %" PRIu64 "%s%s%s%s%s -v",
             seed, nodes, o->steps, o->membership ? " --membership" : "",
             o->safety_only ? " --safety-only" : "", o->no_invariants ? " --no-invariants" : "",
             o->mutation ? " --mutation " : "", o->mutation ? o->mutation : "");
}

static void on_crash(int sig)
{
    char cmd[256];
    repro(cmd, sizeof cmd, cur_seed, &cur_opt, cur_nodes);
    fprintf(stdout, "\nCRASH: signal %d during seed %" PRIu64 "\n", sig, cur_seed);
    if (sim_current) {
        fprintf(stdout, "  last transcript lines:\n");
        sim_print_ring(sim_current, stdout);
    }
    fprintf(stdout, "  reproduce: %s\n", cmd);
    if (cur_opt.mutation)
        fprintf(stdout,
                "mutation %s: CAUGHT (crash/assertion) by seed %" PRIu64 " after %" PRIu64
                " seeds, %" PRIu64 "+ steps in total\n",
                cur_opt.mutation, cur_seed, cur_run, cur_steps);
    fflush(stdout);
    signal(sig, SIG_DFL);
    raise(sig);
}
// NOLINTEND(bugprone-signal-handler,cert-sig30-c)

static void usage(void)
{
    fprintf(stderr,
            "usage: raft_sim [--seeds N] [--start S] [--steps K] [--nodes 3|5|7] [--membership]\n"
            "                [--seed S] [-v] [--determinism] [--mutation NAME] [--safety-only]\n"
            "                [--sanitized-min M] [--max-failures N] [--no-invariants]\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s) return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end) return false;
    *out = v;
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_counts(struct sim_counts *t, const struct sim_counts *c)
{
    t->steps += c->steps;
    t->elections += c->elections;
    t->commits += c->commits;
    t->writes_acked += c->writes_acked;
    t->reads += c->reads;
    t->snapshots += c->snapshots;
    t->snap_installs += c->snap_installs;
    t->conf_changes += c->conf_changes;
    t->crashes += c->crashes;
    t->partitions += c->partitions;
    t->transfers += c->transfers;
    t->msgs += c->msgs;
    if (c->liveness_ms > t->liveness_ms) t->liveness_ms = c->liveness_ms;
}

int main(int argc, char **argv)
{
    struct sim_options opt = {.nodes = 0, .steps = 1000};
    uint64_t seeds = 100, start = 1, one_seed = 0, sanitized_min = 100, max_failures = 10;
    bool have_one = false, determinism = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x = 0;
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            opt.verbose = true;
        } else if (!strcmp(a, "--membership")) {
            opt.membership = true;
        } else if (!strcmp(a, "--safety-only")) {
            opt.safety_only = true;
        } else if (!strcmp(a, "--no-invariants")) {
            opt.no_invariants = true;
        } else if (!strcmp(a, "--determinism")) {
            determinism = true;
        } else if (!strcmp(a, "--seeds") && parse_u64(v, &x) && x > 0) {
            seeds = x;
            i++;
        } else if (!strcmp(a, "--start") && parse_u64(v, &x)) {
            start = x;
            i++;
        } else if (!strcmp(a, "--steps") && parse_u64(v, &x) && x > 0) {
            opt.steps = x;
            i++;
        } else if (!strcmp(a, "--nodes") && parse_u64(v, &x) && (x == 3 || x == 5 || x == 7)) {
            opt.nodes = (uint32_t)x;
            i++;
        } else if (!strcmp(a, "--seed") && parse_u64(v, &x)) {
            one_seed = x;
            have_one = true;
            i++;
        } else if (!strcmp(a, "--sanitized-min") && parse_u64(v, &x)) {
            sanitized_min = x;
            i++;
        } else if (!strcmp(a, "--max-failures") && parse_u64(v, &x) && x > 0) {
            max_failures = x;
            i++;
        } else if (!strcmp(a, "--mutation") && v) {
            opt.mutation = v;
            i++;
        } else {
            usage();
            return 2;
        }
    }
    if (have_one) {
        start = one_seed;
        seeds = 1;
    } else if (opt.verbose && seeds > 1) {
        fprintf(stderr, "raft_sim: -v prints a transcript: use it with --seed S\n");
        return 2;
    }
    const char *san = getenv("ST_SANITIZED");
    if (!have_one && san && !strcmp(san, "1")) {
        uint64_t scaled = seeds / 20 < sanitized_min ? sanitized_min : seeds / 20;
        if (scaled < seeds) {
            printf("raft_sim: ST_SANITIZED=1: running %" PRIu64 " of %" PRIu64
                   " seeds (1/20, at least %" PRIu64 ")\n",
                   scaled, seeds, sanitized_min);
            seeds = scaled;
        }
    }
    bool mutation_mode = opt.mutation != NULL;
    if (opt.mutation && sim_mutation_known(opt.mutation))
        printf("raft_sim: simulator-side mutation %s enabled\n", opt.mutation);
    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    signal(SIGILL, on_crash);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sim_counts total = {0};
    uint64_t failures = 0, run = 0;
    double t0 = now_s();
    for (uint64_t seed = start; seed < start + seeds; seed++) {
        struct sim_result res, res2;
        cur_seed = seed;
        cur_opt = opt;
        cur_nodes = opt.nodes ? opt.nodes : (uint32_t[]){3, 5, 7}[seed % 3];
        cur_run = run + 1;
        cur_steps = total.steps;
        if (sim_run(seed, &opt, &res) != 0) {
            fprintf(stderr, "raft_sim: out of memory\n");
            return 1;
        }
        run++;
        add_counts(&total, &res.counts);
        if (!res.failed && determinism) {
            struct sim_options quiet = opt;
            quiet.verbose = false;
            if (sim_run(seed, &quiet, &res2) != 0) return 1;
            if (res2.hash != res.hash || res2.counts.steps != res.counts.steps) {
                res.failed = true;
                snprintf(res.msg, sizeof res.msg,
                         "nondeterminism: transcript hash %016" PRIx64 " then %016" PRIx64,
                         res.hash, res2.hash);
            }
        }
        if (have_one)
            printf("seed %" PRIu64 " nodes %u: %" PRIu64 " steps, transcript hash %016" PRIx64 "\n",
                   seed, res.nodes, res.counts.steps, res.hash);
        if (res.failed) {
            char cmd[256];
            repro(cmd, sizeof cmd, seed, &opt, res.nodes);
            failures++;
            printf("FAIL seed %" PRIu64 " (nodes %u, step %" PRIu64 "): %s\n  reproduce: %s\n",
                   seed, res.nodes, res.counts.steps, res.msg, cmd);
            if (mutation_mode) {
                printf("mutation %s: CAUGHT by seed %" PRIu64 " after %" PRIu64 " seeds, %" PRIu64
                       " steps in total\n",
                       opt.mutation, seed, run, total.steps);
                return 0;
            }
            if (failures >= max_failures) {
                printf("raft_sim: stopping after %" PRIu64 " failures\n", failures);
                break;
            }
        }
        if (seeds >= 20000 && run % 10000 == 0)
            printf("raft_sim: ... %" PRIu64 " seeds, %" PRIu64 " failures, %.0f s\n", run, failures,
                   now_s() - t0);
    }
    double dt = now_s() - t0;
    printf("raft_sim: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 "), nodes %s%s, %" PRIu64
           " steps%s in %.1f s\n",
           run, start, start + run - 1,
           opt.nodes == 3   ? "3"
           : opt.nodes == 5 ? "5"
           : opt.nodes == 7 ? "7"
                            : "3/5/7",
           opt.membership ? " (membership profile)" : "", total.steps,
           determinism ? " (each seed run twice, transcripts equal)" : "", dt);
    printf("  elections %" PRIu64 ", entries committed %" PRIu64 ", writes acked %" PRIu64
           ", reads checked %" PRIu64 ",\n  snapshots taken %" PRIu64 " / installed %" PRIu64
           ", conf changes %" PRIu64 ", crashes %" PRIu64 ", partitions %" PRIu64
           ", transfers %" PRIu64 ", messages %" PRIu64 ",\n  slowest recovery %" PRIu64
           " ms simulated; %" PRIu64 " failures\n",
           total.elections, total.commits, total.writes_acked, total.reads, total.snapshots,
           total.snap_installs, total.conf_changes, total.crashes, total.partitions,
           total.transfers, total.msgs, total.liveness_ms, failures);
    if (mutation_mode) {
        printf("mutation %s: NOT caught in %" PRIu64 " seeds, %" PRIu64 " steps\n", opt.mutation,
               run, total.steps);
        return 1;
    }
    return failures ? 1 : 0;
}
