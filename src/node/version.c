/* The build's versions: release, commit, formats, compiler (node.h,
 * node_version_get). The format versions are the constants the readers and
 * writers use; this file only collects them. */
#include "node/node.h"

#include "kv/command.h"
#include "kv/kv.h"
#include "storage/common.h"
#include "storage/record.h"
#include "storage/snap_meta.h"
#include "transport/frame.h"
#include "version_gen.h"
#include "wire/msg.h"

#ifndef __VERSION__
#define __VERSION__ "unknown"
#endif

#if defined(__clang__)
#define ST_COMPILER "clang " __clang_version__
#else
#define ST_COMPILER "gcc " __VERSION__
#endif

static const struct node_version node_version_v = {
    .release = ST_RELEASE,
    .commit = ST_GIT_COMMIT,
    .compiler = ST_COMPILER,
    .wal_segment = ST_SEG_VERSION,
    .snapshot_meta = SNAP_META_VERSION,
    .identity = IDENT_VERSION,
    .kv_snapshot = KV_SNAPSHOT_VERSION,
    .kv_snapshot_read_min = 1, /* kv_int.h SNAP_VERSION_1: still read */
    .kv_command = KV_COMMAND_VERSION,
    .frame = FRAME_VERSION,
    .handshake = FRAME_PROTO_VERSION,
    .wire_msg = WIRE_MSG_VERSION,
};

const struct node_version *node_version_get(void)
{
    return &node_version_v;
}
