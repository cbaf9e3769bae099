#!/usr/bin/env bash
# Bad inputs: each must give exit 2, exactly one stderr line, and write nothing under ./out*.
# Each case prints its exit code, its stderr line count and how many out* folders it left (must be 2, 1, 0).
# Usage, from an empty folder: LRBENCH=<checkout>/.venv/bin/lrbench bash <checkout>/scripts/fuzz_bad_inputs.sh
L="${LRBENCH:-lrbench}"
printf 'grid: [unclosed\n' > bad.yaml
printf 'grid: {task: [digits-mlp], estimator: [bp]}\nout: somewhere\n' > out.yaml
printf 'import nonexistent_module_xyz\n' > broken_plugin.py
cases=(
  "run nosuch-suite --out out1"
  "run quick --strategy nosuch --out out2"
  "run quick max_epochs=-1 --out out3"
  "run quick nosuchkey=1 --out out4"
  "run bad.yaml --out out5"
  "run out.yaml --out out6"
  "run quick --only task=nosuch --out out7"
  "run quick estimator_options.copies=0 --out out8"
  "run quick --jobs 0 --out out9"
  "run quick --threads -1 --out out10"
  "gradcheck --task nosuch --estimator ulr"
  "gradcheck --task digits-mlp --estimator ulr --qmc --baseline loo"
  "gradcheck --task digits-mlp --estimator ulr --sigma-lr 0.1"
  "run quick --plugin broken_plugin.py --out out11"
  "check-estimator nosuch"
  "report /nonexistent/folder"
  "paper nosuch"
  "doctor --device cuda"
  "gradcheck --task mnist-mlp --estimator ulr --data-dir /nonexistent"
  "run quick --only task=digits-mlp --plugin nosuch_module_abc --out out12"
)
for c in "${cases[@]}"; do
  err=$(timeout 300 $L $c 2>&1 >/dev/null); code=$?
  lines=$(printf '%s' "$err" | grep -c '' )
  written=$(ls -d out[0-9]* 2>/dev/null | wc -l)
  printf '%-70s exit %s, %s stderr line(s), %s folder(s) written | %s\n' "$c" "$code" "$lines" "$written" "$(printf '%s' "$err" | tail -1 | cut -c1-150)"
  rm -rf out[0-9]*
done
