#!/bin/bash
# One request of the lab's command server (socat ... EXEC:this): reads one line, a base64
# bash script, runs it (output to a file, so that daemons it starts never hold the
# connection), then prints its output and "RXFB-RC=<exit status>".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
IFS= read -r b64 || exit 0
f=$(mktemp /tmp/cmd.XXXXXX)
echo "$b64" | base64 -d > "$f.sh"
timeout 600 bash "$f.sh" > "$f.out" 2>&1 < /dev/null
rc=$?
cat "$f.out"
printf '\nRXFB-RC=%s\n' "$rc"
rm -f "$f" "$f.sh" "$f.out"
