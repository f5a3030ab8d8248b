#!/bin/sh
# The version probe of the fault tests (EXECUTOR_PROBE_COMMAND): the version
# fault-command.sh last wrote for the instance, else the one it started on.
# Each answer is logged in FAULT_DIR/probes.log, and each run in runs.log
# (probe-before/probe-after <instance> <fence> <worker pid> <group>) so the
# test knows which attempts a worker holds.
set -eu
version=$(cat "$FAULT_DIR/$INSTANCE_ID.version" 2>/dev/null || echo "$CURRENT_VERSION")
echo "probe-$SVCUPDATE_PROBE $INSTANCE_ID $SVCUPDATE_FENCE $PPID $$" >> "$FAULT_DIR/runs.log"
echo "$SVCUPDATE_PROBE $INSTANCE_ID $SVCUPDATE_FENCE $version" >> "$FAULT_DIR/probes.log"
echo "$version"
