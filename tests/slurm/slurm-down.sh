#!/usr/bin/env bash
# Stop what slurm-up.sh started, by the PIDs it recorded in $D/pids, newest first; SIGKILL what is left after 10 s
# (slurmd may ignore SIGTERM once the controller is gone).
D=${D:-/tmp/frpo-slurm}
[ -f $D/pids ] || exit 0
tac $D/pids | while read -r name pid; do kill "$pid" 2>/dev/null && echo "stopped $name $pid"; done
for i in $(seq 50); do
  alive=0; while read -r n p; do kill -0 "$p" 2>/dev/null && alive=1; done < $D/pids
  [ $alive = 0 ] && break; sleep 0.2
done
while read -r n p; do kill -0 "$p" 2>/dev/null && kill -9 "$p" && echo "killed -9 $n $p"; done < $D/pids
: > $D/pids
