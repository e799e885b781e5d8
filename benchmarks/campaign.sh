#!/usr/bin/env bash
# The benchmark campaign at one code version, so that every shipped table comes from one package digest
# (issue 24). Run it from a checkout whose acodm_gym/ stays as it is until the campaign ends: a change to the
# package makes every record stale (acodm_gym/runs/provenance.py). Every step resumes where it stopped (finished
# runs are reused, a stopped one resumes from its checkpoint), so run the same command again after a kill or in a
# later session; a step already done takes seconds. One training process at a time: on 2 CPU cores the whole
# campaign takes about 50 hours (the hours per step below were measured here, train.threads=1).
#
# A session's machine is gone when the session ends: before that, `save` keeps what finished (benchmarks/carry.py:
# every finished run's record and the references' Optuna journal into benchmarks/results/tasks/runs/, the dataset
# episodes into benchmarks/results/datasets/), then commit benchmarks/results. The campaign restores those first. Its code version is package digest 6b5a94f0206ea5dc
# (commit e5bf878): where main's acodm_gym/ has moved on, run it from a worktree whose package is that one
# (`git checkout e5bf878 -- acodm_gym`), or every record is stale.
#
#     OMP_NUM_THREADS=1 nohup bash benchmarks/campaign.sh > campaign.log 2>&1 &
#     bash benchmarks/campaign.sh references     # one step: references|datasets|tasks|offline|learned|agents|report
#     bash benchmarks/campaign.sh save           # before the session ends (also while the campaign runs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}  # make install's venv, else PATH's
T=(train.threads=1)
TASKS=(skewed target noisy)
SEEDS=(0 1 2 3 4)
METHODS=natural,uniform,odm,acodm,acodm-proxy,acodm-td3,doge,vector-sac,aioli,ado,acodm-released
# the variants each task's learned policy is chosen among (fixed before any was trained; benchmarks/learned_tuning.py)
declare -A VARIANTS=(
    [skewed]=anchored,anchored-lambda-10,anchored-lambda-30
    [target]=anchored-eval,anchored-eval-lambda-1,anchored-eval-lambda-10,anchored-eval-lambda-30
    [noisy]=anchored,anchored-eval,anchored-eval-lambda-1,anchored-eval-lambda-10
)
step=${1:-all}
run() { [[ $step == all || $step == "$1" ]]; }

if [[ $step == save ]]; then
    exec $PY benchmarks/carry.py save
fi
$PY benchmarks/carry.py restore  # what earlier sessions finished and kept
# whether a task ships references this code version's search made (then its step is done: nothing to redo)
shipped() {
    $PY -c "import json, sys; from acodm_gym.config import TASK_DIR; from acodm_gym.runs.provenance import code_version
path = TASK_DIR / f'{sys.argv[1]}.references.json'
code = json.loads(path.read_text())['search'].get('code') if path.is_file() else None
sys.exit(0 if code and code['source'] == code_version()['source'] else 1)" "$1"
}
if run references; then  # Optuna's search, then natural, uniform and the best static mixture (~2.4, 2.4, 1.7 h)
    for task in "${TASKS[@]}"; do
        shipped "$task" && continue
        $PY -m acodm_gym.cli reference --task "$task" --ship run.progress=false "${T[@]}"
        $PY benchmarks/carry.py save --tasks "$task"
    done
fi
if run datasets; then  # 104 episodes per task, 13 of each of 8 behaviours (~7 h per task), each behaviour kept
    behaviours=$($PY -c "from acodm_gym.runs.offline import BEHAVIOURS; print(' '.join(BEHAVIOURS))")
    for task in "${TASKS[@]}"; do
        for behaviour in $behaviours; do
            $PY benchmarks/datasets.py --tasks "$task" --behaviours "$behaviour" "${T[@]}"
            $PY benchmarks/carry.py save --tasks "$task"
        done
    done
fi
if run tasks; then  # every method on 5 test seeds (~3.3 h per task)
    for task in "${TASKS[@]}"; do
        $PY benchmarks/tasks.py --tasks "$task" --methods "$METHODS" --seeds "${SEEDS[@]}" "${T[@]}"
    done
fi
if run offline; then  # the offline agent on each task's dataset, learning from the task metric (~20 min per task)
    for task in "${TASKS[@]}"; do
        $PY benchmarks/tasks.py --tasks "$task" --methods "$METHODS,offline" --seeds "${SEEDS[@]}" \
            agent.options.reward=metric "${T[@]}"
    done
fi
if run learned; then  # AC-ODM's anchored actor chosen on validation, 3 training runs scored (~2.5 h per task)
    for task in "${TASKS[@]}"; do
        $PY benchmarks/learned_tuning.py --task "$task" --variants "${VARIANTS[$task]}" --score --train-runs 3 \
            learn.episodes=5 "${T[@]}"
    done
fi
if run agents; then  # TD3 (with the variant AC-ODM's choice picked) and the vector SAC across 20 episodes (~1 h each)
    for task in "${TASKS[@]}"; do
        chosen=$($PY -c "import json; print(json.load(open('benchmarks/results/tuning/learned-$task-acodm.json'))['chosen'])")
        $PY benchmarks/learned_tuning.py --task "$task" --agent acodm-td3 --variants "$chosen" --score \
            learn.episodes=20 "${T[@]}"
        $PY benchmarks/learned_tuning.py --task "$task" --agent vector-sac --variants own-eval --score \
            learn.episodes=20 "${T[@]}"
    done
fi
if run report; then  # every task's table with every row: the sweep's methods, the offline agent, the learned ones
    for task in "${TASKS[@]}"; do
        $PY benchmarks/tasks.py --report-only --tasks "$task" --methods "$METHODS,offline" --seeds "${SEEDS[@]}"
    done
fi
