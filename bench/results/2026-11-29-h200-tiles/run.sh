set -u
export GRAFT_HOME=/tmp/g
t0=$(date +%s)
f() { grep -E "seeded|real" $1 | grep -v widths | awk "{print \$1, \$(NF-7), \$(NF-6)}" | sed 's/qwen2.5-coder-/q/; s/smollm2-135m/s/' | paste -sd' ' | fold -w 250; }
for ctx in 2048 512; do for tr in base 1,1,0,0,0,0 1,1,1,0,0,0 1,2,2,0,0,0 1,2,4,4,0,0 1,1,2,4,0,0 base; do
  if [ $tr = base ]; then unset GRAFT_X_TROWS; else export GRAFT_X_TROWS=$tr; fi
  .stage/graft-x bench gpu --model /none --checks none --shapes smollm2-135m,qwen2.5-coder-0.5b --context $ctx --reps 30 > $OUT/t.txt 2>&1; echo "== $ctx trows $tr"; f $OUT/t.txt; done; done
unset GRAFT_X_TROWS
echo "t $(( $(date +%s) - t0 ))s"
GRAFT_X_TROWS=1,2,4,4,0,0 .stage/graft-x bench gpu --model /none --checks tiny --shapes smollm2-135m,qwen2.5-coder-0.5b,synthetic-gqa32 --reps 5 > $OUT/checks_D.txt 2>&1; echo "rc $?"; grep -c PASS $OUT/checks_D.txt; grep FAIL $OUT/checks_D.txt
echo "t $(( $(date +%s) - t0 ))s"
