set -u
export GRAFT_HOME=/tmp/g
S=smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-7b
t0=$(date +%s)
.stage/graft-mB bench gpu --model /none --checks tiny --shapes smollm2-135m,qwen2.5-coder-0.5b,synthetic-gqa32 --reps 30 > $OUT/mB_checks.txt 2>&1; echo "rc $? $(( $(date +%s) - t0 ))s"
grep -E "FAIL" $OUT/mB_checks.txt | head; grep -c PASS $OUT/mB_checks.txt
f() { grep -E "seeded|real" $1 | grep -v widths | awk "{print \$1, \$(NF-7), \$(NF-6)}" | sed 's/qwen2.5-coder-/q/; s/smollm2-135m/s/' | paste -sd' ' | fold -w 250; }
for ctx in 512 2048; do for b in graft-split graft-mA graft-mB graft-split graft-mA graft-mB; do .stage/$b bench gpu --model /none --checks none --shapes $S --context $ctx --reps 30 > $OUT/ab_${ctx}_$b.txt 2>&1; echo "== $ctx $b"; f $OUT/ab_${ctx}_$b.txt; done; done
echo "t $(( $(date +%s) - t0 ))s"
for ctx in 512 2048; do for kvb in 32,32,32,16,8,8 16,16,16,16,8,8 32,32,16,8,8,8 32,32,32,32,16,8 32,32,32,32,32,16 8,8,8,8,8,8; do GRAFT_X_KVB=$kvb .stage/graft-mB bench gpu --model /none --checks none --shapes smollm2-135m --context $ctx --reps 30 > $OUT/kvb_${ctx}_$kvb.txt 2>&1; echo "== $ctx kvb $kvb"; f $OUT/kvb_${ctx}_$kvb.txt; done; done
echo "t $(( $(date +%s) - t0 ))s"
