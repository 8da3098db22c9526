/* `stcache snapshot save|inspect` (cli/backup.h). */
#include "cli/backup.h"

#include "cli/transport.h"
#include "node/node.h"
#include "stcache/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fsync_parent_dir(const char *file)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return st_errno_to_code(errno);
    int rc = fsync(fd) == 0 ? 0 : st_errno_to_code(errno);
    close(fd);
    return rc;
}

static void print_report(const char *file, const struct node_backup_report *r, bool json)
{
    const struct st_snapshot_info *s = &r->meta.snap;
    uint64_t meta_bytes = r->meta.total_bytes - NODE_BACKUP_HEADER_BYTES - s->data_bytes - 4;
    if (json) {
        printf("{\"file\":\"%s\",\"format_version\":%u,\"cluster_id\":\"%016" PRIx64
               "\",\"index\":%" PRIu64 ",\"term\":%" PRIu64 ",\"keys\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"state_bytes\":%" PRIu64 ",\"meta_bytes\":%" PRIu64
               ",\"checksum\":\"%08x\",\"ok\":true,\"members\":[",
               file, NODE_BACKUP_VERSION, r->meta.cluster_id, s->meta.index, s->meta.term, r->keys,
               r->meta.total_bytes, s->data_bytes, meta_bytes, r->file_crc);
        for (uint32_t i = 0; i < s->meta.conf.n; i++) {
            char raft[NODE_ADDR_MAX], http[NODE_ADDR_MAX];
            node_member_addrs(&s->meta.conf.members[i], raft, http);
            printf("%s{\"id\":%" PRIu64 ",\"raft\":\"%s\",\"http\":\"%s\",\"voter\":%s}",
                   i ? "," : "", s->meta.conf.members[i].id, raft, http,
                   s->meta.conf.members[i].role == RAFT_VOTER ? "true" : "false");
        }
        printf("]}\n");
        return;
    }
    printf("file:       %s\n"
           "format:     stcache backup, version %u\n"
           "cluster id: %016" PRIx64 "\n"
           "index:      %" PRIu64 " (term %" PRIu64 ")\n"
           "keys:       %" PRIu64 "\n"
           "bytes:      %" PRIu64 " (state %" PRIu64 ", meta %" PRIu64 ", header and checksum %u)\n"
           "checksum:   ok (crc32c %08x)\n"
           "members:\n",
           file, NODE_BACKUP_VERSION, r->meta.cluster_id, s->meta.index, s->meta.term, r->keys,
           r->meta.total_bytes, s->data_bytes, meta_bytes, NODE_BACKUP_HEADER_BYTES + 4,
           r->file_crc);
    for (uint32_t i = 0; i < s->meta.conf.n; i++) {
        char raft[NODE_ADDR_MAX], http[NODE_ADDR_MAX];
        node_member_addrs(&s->meta.conf.members[i], raft, http);
        printf("  %" PRIu64 " %s raft %s http %s\n", s->meta.conf.members[i].id,
               s->meta.conf.members[i].role == RAFT_VOTER ? "voter  " : "learner", raft,
               http[0] ? http : "-");
    }
}

int cli_backup_inspect(const char *file, bool json)
{
    struct node_backup_report r;
    uint64_t off;
    char why[256];
    int rc = node_backup_check(file, &r, &off, why, sizeof why);
    if (rc != 0) {
        if (json)
            printf("{\"file\":\"%s\",\"ok\":false,\"offset\":%" PRIu64 ",\"reason\":\"%s\"}\n",
                   file, off, why);
        fprintf(stderr, "stcache: %s: damaged at offset %" PRIu64 ": %s\n", file, off, why);
        return CLI_EXIT_FAILED;
    }
    print_report(file, &r, json);
    return CLI_EXIT_OK;
}

int cli_backup_save(const struct cli_endpoint *eps, size_t n_eps, int timeout_ms, const char *file,
                    bool json, const char *auth_header)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", file) >= sizeof tmp) {
        fprintf(stderr, "stcache: file name too long\n");
        return CLI_EXIT_USAGE;
    }
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "stcache: cannot create %s: %s\n", tmp, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    struct cli_buf head = {0}, rbuf = {0};
    struct http_response resp;
    int exit_code = CLI_EXIT_UNAVAILABLE;
    size_t used = n_eps;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n_eps; i++) {
        const struct cli_endpoint *ep = &eps[i];
        head.len = 0;
        bool v6 = strchr(ep->host, ':') != NULL;
        if (cli_buf_printf(
                &head, "GET /snapshot HTTP/1.1\r\nHost: %s%s%s:%u\r\nConnection: close\r\n%s\r\n",
                v6 ? "[" : "", ep->host, v6 ? "]" : "", (unsigned)ep->port,
                auth_header ? auth_header : "") != 0) {
            exit_code = CLI_EXIT_FAILED;
            break;
        }
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
            fprintf(stderr, "stcache: %s: %s\n", tmp, strerror(errno));
            exit_code = CLI_EXIT_FAILED;
            break;
        }
        const char *why = "";
        int rc = cli_http_download(ep, &head, timeout_ms, fd, &rbuf, &resp, &bytes, &why);
        if (rc != 0) {
            fprintf(stderr, "stcache: snapshot save: %s:%u: %s\n", ep->host, (unsigned)ep->port,
                    why);
            continue;
        }
        if (resp.status == 503) {
            fprintf(stderr, "stcache: snapshot save: %s:%u: HTTP 503: %.*s\n", ep->host,
                    (unsigned)ep->port, (int)resp.body_len, resp.body);
            continue;
        }
        if (resp.status != 200) {
            fprintf(stderr, "stcache: snapshot save: HTTP %d from %s:%u: %.*s\n", resp.status,
                    ep->host, (unsigned)ep->port, (int)resp.body_len, resp.body);
            exit_code = CLI_EXIT_REJECTED;
            break;
        }
        used = i;
        break;
    }
    cli_buf_free(&head);
    cli_buf_free(&rbuf);
    if (used == n_eps) {
        close(fd);
        unlink(tmp);
        return exit_code;
    }
    if (fsync(fd) != 0) {
        fprintf(stderr, "stcache: fsync %s: %s\n", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return CLI_EXIT_FAILED;
    }
    close(fd);
    struct node_backup_report r;
    uint64_t off;
    char why[256];
    int rc = node_backup_check(tmp, &r, &off, why, sizeof why);
    if (rc != 0) {
        fprintf(stderr, "stcache: the backup from %s:%u is damaged at offset %" PRIu64 ": %s\n",
                eps[used].host, (unsigned)eps[used].port, off, why);
        unlink(tmp);
        return CLI_EXIT_REJECTED;
    }
    if (rename(tmp, file) != 0 || fsync_parent_dir(file) != 0) {
        fprintf(stderr, "stcache: cannot rename %s to %s: %s\n", tmp, file, strerror(errno));
        unlink(tmp);
        return CLI_EXIT_FAILED;
    }
    if (json) {
        print_report(file, &r, true);
    } else {
        printf("saved %s from %s:%u: index %" PRIu64 ", term %" PRIu64 ", keys %" PRIu64
               ", bytes %" PRIu64 "\n",
               file, eps[used].host, (unsigned)eps[used].port, r.meta.snap.meta.index,
               r.meta.snap.meta.term, r.keys, r.meta.total_bytes);
    }
    return CLI_EXIT_OK;
}

int cli_backup_restore_main(int argc, char **argv)
{
    const char *file = NULL, *data = NULL, *id_s = NULL, *peers_s = NULL, *cid_s = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--data") == 0         ? &data
                            : strcmp(a, "--id") == 0         ? &id_s
                            : strcmp(a, "--peers") == 0      ? &peers_s
                            : strcmp(a, "--cluster-id") == 0 ? &cid_s
                                                             : NULL;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "stcache: option %s needs a value\n", a);
                return CLI_EXIT_USAGE;
            }
            *slot = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (a[0] == '-' || file) {
            fprintf(stderr, "stcache: snapshot restore: unexpected %s\n", a);
            return CLI_EXIT_USAGE;
        } else {
            file = a;
        }
    }
    if (!file || !data || !id_s || !peers_s) {
        fprintf(stderr, "usage: stcache snapshot restore FILE --data DIR --id N "
                        "--peers ID=RAFT/HTTP,... [--cluster-id HEX]\n");
        return CLI_EXIT_USAGE;
    }
    char *end;
    unsigned long long id = strtoull(id_s, &end, 10);
    if (*end || id == 0) {
        fprintf(stderr, "stcache: --id takes a positive number\n");
        return CLI_EXIT_USAGE;
    }
    uint64_t cid = 0;
    if (cid_s) {
        cid = strtoull(cid_s, &end, 16);
        if (*end || cid == 0) {
            fprintf(stderr, "stcache: --cluster-id takes a non-zero hexadecimal number\n");
            return CLI_EXIT_USAGE;
        }
    }
    struct node_peer_addr *peers = calloc(RAFT_MEMBERS_MAX, sizeof *peers);
    char err[256];
    int n = peers ? node_peers_parse(peers_s, peers, RAFT_MEMBERS_MAX, err, sizeof err) : ST_ENOMEM;
    if (n < 0) {
        fprintf(stderr, "stcache: --peers: %s\n", peers ? err : "out of memory");
        free(peers);
        return CLI_EXIT_USAGE;
    }
    struct node_backup_report r;
    uint64_t off, new_cid;
    char why[512];
    int rc = node_backup_restore(file, data, id, peers, (uint32_t)n, cid, &r, &new_cid, &off, why,
                                 sizeof why);
    free(peers);
    if (rc != 0) {
        if (rc == ST_ECORRUPT || (rc == ST_EINVAL && off != 0))
            fprintf(stderr, "stcache: %s: damaged at offset %" PRIu64 ": %s (nothing created)\n",
                    file, off, why);
        else
            fprintf(stderr, "stcache: snapshot restore: %s\n", why);
        return CLI_EXIT_FAILED;
    }
    if (json)
        printf("{\"data\":\"%s\",\"id\":%llu,\"cluster_id\":\"%016" PRIx64 "\",\"index\":%" PRIu64
               ",\"term\":%" PRIu64 ",\"keys\":%" PRIu64 ",\"from_cluster_id\":\"%016" PRIx64
               "\"}\n",
               data, id, new_cid, r.meta.snap.meta.index, r.meta.snap.meta.term, r.keys,
               r.meta.cluster_id);
    else
        printf("restored %s into %s for node %llu: index %" PRIu64 ", term %" PRIu64
               ", keys %" PRIu64 ", new cluster id %016" PRIx64 " (was %016" PRIx64 ")\n"
               "start it with: stcache server --id %llu --data %s --raft ... --http ...\n",
               file, data, id, r.meta.snap.meta.index, r.meta.snap.meta.term, r.keys, new_cid,
               r.meta.cluster_id, id, data);
    return CLI_EXIT_OK;
}
