#!/usr/bin/env bash
# Packaging check: the wheel alone, without the checkout, installs and trains.
# Builds the wheel, checks it carries the configs, installs it into a fresh venv (CPU torch pinned in
# the same pip command, so no dependency pulls a CUDA build), then runs a short `acodm-gym train`
# from a temporary directory outside the checkout on a tiny local corpus and checks its outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip wheel -q --no-deps -w "$work/dist" .
wheel=$(ls "$work"/dist/acodm_gym-*.whl)
"$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["acodm_gym/configs/default.yaml", "acodm_gym/configs/tasks/noisy.yaml", "acodm_gym/configs/tasks/_budget.yaml", "acodm_gym/configs/models/tiny-proxy.yaml", "acodm_gym/configs/deepspeed/zero1.json"]
missing = [n for n in need if n not in names]
sys.exit(f"wheel check: {sys.argv[1]} lacks {missing} (setup.cfg [options.package_data])" if missing else 0)
EOF

"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$TORCH" "$wheel"

cd "$work"  # outside the checkout: only the installed wheel can be imported
"$work/venv/bin/python" - <<'EOF'
import pathlib, sysconfig
stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
for domain, pattern in (("json", "json/*.py"), ("email", "email/*.py")):
    out = pathlib.Path("text") / domain
    out.mkdir(parents=True)
    for path in sorted(stdlib.glob(pattern)):
        (out / path.name.replace(".py", ".txt")).write_text(path.read_text(encoding="utf-8"))
EOF
OMP_NUM_THREADS=1 "$work/venv/bin/acodm-gym" train --agent uniform data.corpus="$work/text" data.cache_dir="$work/cache" \
    data.vocab_size=512 model.hidden_size=32 model.num_layers=2 model.num_heads=2 model.intermediate_size=64 model.seq_len=32 \
    train.total_steps=5 train.batch_size=4 train.warmup_steps=1 env.eval_interval=5 env.eval_batches=1 run.progress=false
"$work/venv/bin/python" - <<'EOF'
import json, pathlib
run = pathlib.Path("runs/uniform-seed0")
summary = json.loads((run / "summary.json").read_text())
assert summary["steps"] == 5 and summary["domains"] == ["email", "json"], summary
assert (run / "model" / "model.safetensors").is_file() and (run / "mixture.json").is_file()
print(f"wheel check: installed wheel trained outside the checkout, test ppl {summary['test_ppl_avg']:.1f}")
EOF
