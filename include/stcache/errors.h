/* One error vocabulary for every stcache module.
 *
 * Functions return 0 on success or a negative ST_E* code from this table.
 * errno is translated once, at the syscall boundary, with st_errno_to_code().
 * Messages carry context; codes carry the category a caller branches on. */
#ifndef STCACHE_ERRORS_H
#define STCACHE_ERRORS_H

#include "stcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_ERRNO_MAP(X)                                                                            \
    X(ST_OK, 0, "ok")                                                                              \
    X(ST_ENOMEM, -1, "out of memory")                                                              \
    X(ST_EINVAL, -2, "invalid argument")                                                           \
    X(ST_ENOTLEADER, -3, "not the leader")                                                         \
    X(ST_EBUSY, -4, "busy: try again later")                                                       \
    X(ST_ECORRUPT, -5, "corrupt data")                                                             \
    X(ST_EIO, -6, "input/output error")                                                            \
    X(ST_ENOSPC, -7, "no space left on device")                                                    \
    X(ST_ENOENT, -8, "not found")                                                                  \
    X(ST_EEXIST, -9, "already exists")                                                             \
    X(ST_ETOOBIG, -10, "too large")                                                                \
    X(ST_ECOMPACTED, -11, "log entry compacted away")                                              \
    X(ST_EUNAVAILABLE, -12, "log entry not available yet")                                         \
    X(ST_ESTALE, -13, "stale message or term")                                                     \
    X(ST_EPROTO, -14, "protocol error: malformed message")                                         \
    X(ST_ECANCELED, -15, "canceled")                                                               \
    X(ST_ETIMEDOUT, -16, "timed out")                                                              \
    X(ST_ECLOSED, -17, "closed")                                                                   \
    X(ST_EMISMATCH, -18, "identity mismatch (cluster or node id)")                                 \
    X(ST_EPRECONDITION, -19, "precondition failed")                                                \
    X(ST_ECONFCHANGE, -20, "a configuration change is already pending")                            \
    X(ST_ETRANSFER, -21, "leadership transfer in progress")                                        \
    X(ST_EPERM, -22, "permission denied")                                                          \
    X(ST_ECONNECTION, -23, "connection failed")                                                    \
    X(ST_EFATAL, -24, "fatal storage error: the store must stop")                                  \
    X(ST_ENFILE, -25, "too many open files")                                                       \
    X(ST_EMEMLIMIT, -26, "memory limit reached (--max-memory)")                                    \
    X(ST_EIDEMPOTENCY, -27, "idempotency key already used by a different request")

enum st_error {
#define ST_X_(name, value, text) name = (value),
    ST_ERRNO_MAP(ST_X_)
#undef ST_X_
};

/* Human-readable text for a code; never NULL. */
ST_API const char *st_strerror(int code);

/* Translates an errno value (positive) into an ST_E* code. */
ST_API int st_errno_to_code(int err);

#ifdef __cplusplus
}
#endif

#endif
