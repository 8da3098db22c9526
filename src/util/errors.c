#include "stcache/errors.h"

#include <errno.h>

const char *st_strerror(int code)
{
    switch (code) {
#define ST_X_(name, value, text)                                                                   \
    case value:                                                                                    \
        return text;
        ST_ERRNO_MAP(ST_X_)
#undef ST_X_
    default:
        return "unknown error";
    }
}

int st_errno_to_code(int err)
{
    switch (err) {
    case 0:
        return ST_OK;
    case ENOMEM:
        return ST_ENOMEM;
    case EINVAL:
        return ST_EINVAL;
    case ENOSPC:
    case EDQUOT:
        return ST_ENOSPC;
    case ENOENT:
        return ST_ENOENT;
    case EEXIST:
        return ST_EEXIST;
    case EACCES:
    case EPERM:
    case EROFS:
        return ST_EPERM;
    case EFBIG:
    case E2BIG:
        return ST_ETOOBIG;
    case EMFILE:
    case ENFILE:
        return ST_ENFILE;
    case ETIMEDOUT:
        return ST_ETIMEDOUT;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
        return ST_ECONNECTION;
    default:
        return ST_EIO;
    }
}
