#!/bin/sh
# run.sh: runs every test program and script, counts the PASS/FAIL/SKIP lines
# they print, and ends with "N passed, N failed[, N skipped]". A test that
# exits non-zero without printing FAIL (a crash) counts as one failure.
cd "$(dirname "$0")/.." || exit 2
passed=0 failed=0 skipped=0
log=$(mktemp)
for t in "$@"; do
	case $t in
	*.sh) runner="sh $t" ;;
	*) runner="./$t" ;;
	esac
	$runner >"$log" 2>&1
	rc=$?
	grep -E '^(PASS|FAIL|SKIP) ' "$log" | sed "s|^|  $(basename "$t"): |"
	p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "  $(basename "$t"): FAIL exited with status $rc without a FAIL line; last output:"
		tail -n 5 "$log" | sed 's/^/    /'
		f=1
	fi
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
done
rm -f "$log"
if [ $skipped -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
