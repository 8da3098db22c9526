#!/usr/bin/env python3
"""Runs stcache real-process cluster scenarios.

usage: run.py STCACHE_BINARY [SCENARIO...]     (all scenarios by default)

Environment: ST_SANITIZED=1 scales deadlines up and workloads down (ASan
builds); ST_KEEP_DIRS=1 keeps the temporary data/log directories.
Registered with ctest by tests/cluster/CMakeLists.txt, one test per scenario.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import scenarios_bad_input  # noqa: E402
import scenarios_deploy  # noqa: E402
import scenarios_client_tls  # noqa: E402
import scenarios_auth  # noqa: E402
import scenarios_basic  # noqa: E402
import scenarios_durability  # noqa: E402
import scenarios_exactly  # noqa: E402
import scenarios_failover  # noqa: E402
import scenarios_fixtures  # noqa: E402
import scenarios_membership  # noqa: E402
import scenarios_ops  # noqa: E402
import scenarios_memory  # noqa: E402
import scenarios_process  # noqa: E402
import scenarios_resilience  # noqa: E402
import scenarios_list  # noqa: E402
import scenarios_peers  # noqa: E402
import scenarios_recovery  # noqa: E402
import scenarios_security  # noqa: E402
import scenarios_session  # noqa: E402
import scenarios_slow_readers  # noqa: E402
import scenarios_watch  # noqa: E402

SCENARIOS = {}
for mod in (scenarios_basic, scenarios_failover, scenarios_durability, scenarios_membership,
            scenarios_bad_input, scenarios_memory, scenarios_process, scenarios_resilience,
            scenarios_slow_readers, scenarios_exactly, scenarios_security, scenarios_peers,
            scenarios_ops, scenarios_list, scenarios_recovery, scenarios_fixtures,
            scenarios_deploy, scenarios_client_tls,
            scenarios_watch, scenarios_auth, scenarios_session):
    SCENARIOS.update(mod.SCENARIOS)

if __name__ == "__main__":
    harness.main(SCENARIOS)
