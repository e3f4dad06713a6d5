set -u
export GRAFT_HOME=/tmp/g
S=smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b,qwen2.5-coder-7b
t0=$(date +%s)
GRAFT_X_SLOTS=1 GRAFT_X_MINK=0 .stage/graft-x bench gpu --model /none --checks tiny --shapes $S,synthetic-gqa32 --reps 30 > $OUT/mink0.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
GRAFT_X_SPLIT=0 .stage/graft-x bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/off.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
for m in 1024 2048 4096; do GRAFT_X_MINK=$m .stage/graft-x bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/mink$m.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"; done
GRAFT_X_SPLIT=0 .stage/graft-x bench gpu --model /none --checks none --shapes $S --reps 30 > $OUT/off2.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
grep -E "PASS|FAIL|rror|slots" $OUT/mink0.txt | cut -c1-200 | grep -v "^logits\|^spec"
for f in off mink0 mink1024 mink2048 mink4096 off2; do echo "== $f"; grep -E "seeded|real" $OUT/$f.txt | grep -v widths | awk "{print \$1, \$(NF-7), \$(NF-6)}" | sed 's/qwen2.5-coder-/q/; s/smollm2-135m/s/' | paste -sd' ' | fold -w 250; done
