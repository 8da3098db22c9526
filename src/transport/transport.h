/* The transport's internals shared by its files and tests; the API is
 * stcache/transport.h. */
#ifndef ST_TRANSPORT_TRANSPORT_H
#define ST_TRANSPORT_TRANSPORT_H

#include "stcache/transport.h"

/* The reconnect bound d after a failed dial (the delay is drawn in
 * [d/2, d]): reconnect_base_ms first and while the outage is younger than
 * reconnect_fast_ms, then doubling from prev_bound_ms up to
 * reconnect_max_ms. prev_bound_ms 0: the first dial of an outage. */
uint32_t st_tr_reconnect_bound_ms(const struct st_tr_config *cfg, uint32_t prev_bound_ms,
                                  uint64_t down_for_ms);

#endif
