#!/bin/sh
# The update command of the end-to-end test (EXECUTOR=command). It reports
# the update it was given and exits 3 for the attempts listed in
# E2E_FAILING_ATTEMPTS ("instance-id:primary instance-id:secondary ..."),
# 0 otherwise. It also fails (exit 4) if the worker's own configuration
# reached its environment, which the command executor must strip.
set -eu
echo "updating ${INSTANCE_ID} from ${CURRENT_VERSION} to ${TARGET_VERSION} (${ATTEMPT} attempt, window ends ${WINDOW_END})"
if [ -n "${SENDGRID_API_KEY:-}${DATABASE_URL:-}" ]; then
	echo "the worker's configuration leaked into the update command's environment"
	exit 4
fi
for failing in ${E2E_FAILING_ATTEMPTS:-}; do
	if [ "$failing" = "${INSTANCE_ID}:${ATTEMPT}" ]; then
		echo "simulated failure of the ${ATTEMPT} attempt of ${INSTANCE_ID}"
		exit 3
	fi
done
echo "${INSTANCE_ID} now runs ${TARGET_VERSION}"
