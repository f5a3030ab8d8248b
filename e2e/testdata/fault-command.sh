#!/bin/sh
# The update command of the fault tests (EXECUTOR=command). FAULT_DIR holds
# each instance's version (<instance>.version, what fault-probe.sh reads)
# and the record of every run:
#   runs.log        start/done/exit <instance> <fence> <worker pid> <group>
#   <instance>.groups  the process group of each run of the instance
#   duplicates.log  a run that started beside a live run of the same
#                   instance, or after the update had succeeded
# A run leaves a helper process running in its group, as real tooling may,
# updates for FAULT_RUN_SECONDS, writes the target version, and then waits
# until the test lets it exit (FAULT_DIR/release.<fence>) or kills its
# worker: the crash at completion.
set -eu
dir=$FAULT_DIR
fence=$SVCUPDATE_FENCE

# group_running PGID: does a process of the group still run? Zombies,
# which only wait for a parent to collect them, do not count.
group_running() {
	pg=$1
	for stat in /proc/[0-9]*/stat; do
		read -r line < "$stat" 2>/dev/null || continue
		# After the command name: state, parent, process group.
		set -- ${line##*) }
		if [ "$3" = "$pg" ] && [ "$1" != Z ] && [ "$1" != X ]; then
			return 0
		fi
	done
	return 1
}

sleep 600 &
# Registered before looking at the others: two runs starting at once see
# each other.
echo "$$" >> "$dir/$INSTANCE_ID.groups"
for group in $(cat "$dir/$INSTANCE_ID.groups"); do
	if [ "$group" != "$$" ] && group_running "$group"; then
		echo "concurrent $INSTANCE_ID fence $fence beside group $group" >> "$dir/duplicates.log"
	fi
done
if [ "$(cat "$dir/$INSTANCE_ID.version" 2>/dev/null || true)" = "$TARGET_VERSION" ]; then
	echo "after-success $INSTANCE_ID fence $fence" >> "$dir/duplicates.log"
fi
echo "start $INSTANCE_ID $fence $PPID $$" >> "$dir/runs.log"
echo "updating $INSTANCE_ID to $TARGET_VERSION under fence $fence"
sleep "${FAULT_RUN_SECONDS:-2}"
echo "$TARGET_VERSION" > "$dir/$INSTANCE_ID.version"
echo "done $INSTANCE_ID $fence $PPID $$" >> "$dir/runs.log"
while [ ! -e "$dir/release.$fence" ]; do
	sleep 0.05
done
echo "exit $INSTANCE_ID $fence $PPID $$" >> "$dir/runs.log"
