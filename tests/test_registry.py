"""Extension points: an entry registered once is reachable by name from the config, the CLI and the runs;
an agent's options are checked before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_tasks import task_file

from acodm_gym import cli
from acodm_gym.agents import Agent, register
from acodm_gym.config import ConfigError, load_config
from acodm_gym.registry import AGENTS, Registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "user_agent.py"


class RewardTally(Agent):
    """A toy learning agent: uniform weights, and the sum of |reward| it was given."""

    def __init__(self, spec):
        super().__init__(spec)
        self.seen = 0.0

    def act(self, obs):
        return np.full(self.k, 1.0 / self.k)

    def observe(self, obs, action, reward, next_obs, info):
        self.seen += float(np.abs(info["vector_reward"]).sum())

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


@pytest.fixture
def tally():
    """``RewardTally`` registered as ``tally`` for one test; every instance built is kept."""
    built = []

    class Tally(RewardTally):
        def __init__(self, spec):
            super().__init__(spec)
            built.append(self)

    register("tally")(Tally)
    yield built
    AGENTS.unregister("tally")


@pytest.fixture(scope="module")
def small_task(tmp_path_factory, corpus_text_dir):
    root = tmp_path_factory.mktemp("task")
    return task_file(root, corpus_text_dir, root / "cache")


def test_a_registry_lists_lazy_entries_without_importing_them_and_suggests_the_closest():
    reg = Registry("widget", "x.widget", None, {"json": "json:dumps"})
    reg.register("mine")(len)
    assert reg.names() == ("json", "mine") and reg.get("json") is json.dumps and reg["mine"] is len
    with pytest.raises(ConfigError, match="x.widget='jsno' is not supported; choose one of json, mine. Did you mean"):
        reg.check("jsno")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("mine", len)


def test_a_registered_agent_runs_by_name_in_train_and_compare_and_gets_rewards(tally, small_task, tmp_path):
    from acodm_gym.runs.compare import compare
    from acodm_gym.runs.runner import train

    cfg = load_config(None, ["train.total_steps=6", "env.eval_interval=3", "agent.name=tally"], task=str(small_task))
    cfg.run.out_dir = str(tmp_path / "runs")
    result = train(cfg, log=lambda _: None)
    assert result.summary["agent"] == "tally" and tally[-1].seen > 0
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["agent"]["name"] == "tally" and saved["env"]["compute_reward"] is True
    out = compare(cfg, seeds=[0], methods=["natural", "tally"], out=tmp_path / "cmp", log=lambda _: None)
    assert set(json.loads((out / "results.json").read_text())["methods"]) == {"natural", "tally"}
    assert tally[-1].seen > 0  # the compare run's own agent


def test_a_registered_agent_learns_across_episodes_and_is_scored_frozen(tally, config, tmp_path):
    """learn carries the agent across training episodes, then scores it rebuilt from agent.pt, frozen: it
    plays without observing (its tally stays the saved one) and the env computes no reward for it."""
    from acodm_gym.runs.learn import learn

    overrides = ["agent.name=tally", "train.total_steps=4", "env.eval_interval=2", "run.plots=false"]
    cfg = load_config(config, [*overrides, f"run.out_dir={tmp_path}"])
    curve = learn(cfg, 2, tmp_path / "learn", test_seeds=[0], log=lambda _: None)
    episodes = [tmp_path / "learn" / "train" / f"ep-00{e}" / "agent.pt" for e in (0, 1)]
    seen = [torch.load(path, weights_only=True)["state"]["seen"] for path in episodes]
    assert 0 < seen[0] < seen[1]  # the second episode went on from the first's agent
    test = tmp_path / "learn" / "test" / "after-2" / "seed-0"
    saved = yaml.safe_load((test / "config.yaml").read_text())
    assert saved["agent"]["name"] == "tally" and saved["agent"]["frozen"] is True
    assert saved["agent"]["init_from"] == str(tmp_path / "learn" / "agent.pt")
    assert saved["env"]["compute_reward"] is False
    assert tally[-1].seen == seen[1]  # the scored agent loaded the last episode's state and never observed
    assert [p["episodes"] for p in curve["test"]] == [2] and np.isfinite(curve["test"][0]["mean_test_metric"])


def test_a_registered_agent_runs_from_the_command_line(tally, config, tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({**config, "train": {**config["train"], "total_steps": 4}}))
    argv = ["train", "--config", str(path), "--agent", "tally", "--out-dir", str(tmp_path), "run.plots=false"]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "tally-seed0" / "summary.json").read_text())["agent"] == "tally"
    assert tally[-1].seen > 0
    assert "tally" in cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def test_an_agent_object_is_recorded_by_its_name_and_gets_the_reward_it_declares(tally, config, tmp_path):
    from acodm_gym.agents import EnvSpec
    from acodm_gym.envs.pretrain_env import PretrainEnv
    from acodm_gym.runs.runner import train

    cfg = load_config(config, ["train.total_steps=4", f"run.out_dir={tmp_path}", "run.plots=false"])
    assert cfg.agent.name == "natural"  # the config's agent, which needs no reward
    env = PretrainEnv(cfg, log=lambda _: None)
    spec = EnvSpec.from_env(env)
    env.close()
    agent = AGENTS["tally"](spec)
    result = train(cfg, log=lambda _: None, agent=agent)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (saved["agent"]["name"], saved["env"]["compute_reward"]) == ("tally", True)
    assert result.summary["agent"] == "tally" and agent.seen > 0
    with pytest.raises(ConfigError, match="agent 'agent' \\(RewardTally\\) is not registered"):
        train(cfg, log=lambda _: None, agent=RewardTally(spec))


def test_the_example_user_agent_runs_in_compare(config, tmp_path):
    spec = importlib.util.spec_from_file_location("user_agent", EXAMPLE)
    module = sys.modules["user_agent"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        out = module.main(["--config", str(path), "--out", str(tmp_path / "cmp"), "train.total_steps=8"])
        run = out / "follow-reward-seed0"
        assert json.loads((run / "summary.json").read_text())["agent"] == "follow-reward"
        rewards = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)["reward"]
        assert len(rewards) == 8 and np.all(rewards != 0)
        assert load_config(config, ["agent.name=follow-reward"]).agent.name == "follow-reward"
        with pytest.raises(ConfigError, match=r"agent.options.eta=-1.0 is out of range: give a value in \(0, inf\)"):
            module.FollowTheReward.make_options({"eta": -1})
    finally:
        AGENTS.unregister("follow-reward")
        del sys.modules["user_agent"]


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--agent", "natural", "agent.options.gama=0.5"], "Agent 'natural' takes no options"),
        (["--agent", "natural", "agent.weights=[1,2,3]"], "agent 'natural' does not read it"),
        (["--agent", "acodm", "agent.options.gama=0.5"], "Did you mean 'agent.options.gamma'"),
        (
            ["--agent", "acodm", "agent.options.gamma=1.5"],
            "agent.options.gamma=1.5 is out of range: give a value in [0, 1)",
        ),
        (["--agent", "acodm", "agent.options.tau=-1"], "agent.options.tau=-1.0 is out of range"),
        (["--agent", "td3", "agent.options.buffer_size=0"], "agent.options.buffer_size=0 is out of range"),
        (
            ["--agent", "td3", "agent.options.gamma=1.5"],
            "agent.options.gamma=1.5 is out of range: give a value in [0, 1]",
        ),
        (["--agent", "acodm", "agent.options.prior=doremi"], "choose one of natural, uniform"),
        (["--agent", "mine"], "agent.name='mine' is not supported; choose one of natural"),
    ],
)
def test_bad_agent_options_fail_before_any_work(argv, text, tmp_path, capsys):
    """The corpus directory does not exist: an error about the options proves nothing was built first."""
    missing = ["data.corpus=" + str(tmp_path / "no-corpus"), f"run.out_dir={tmp_path}"]
    assert cli.main(["train", *argv, *missing]) == 2
    assert text in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_compare_gives_each_method_the_options_it_takes_and_refuses_those_none_takes(tmp_path, capsys):
    from acodm_gym.runs.compare import for_agent

    cfg = load_config(None, ["agent.options.gamma=0.5", "agent.options.n_steps=8"])
    assert for_agent(cfg, "acodm").agent.options == {"gamma": 0.5}
    assert for_agent(cfg, "ppo").agent.options == {"gamma": 0.5, "n_steps": 8}
    assert for_agent(cfg, "natural").agent.options == {}
    missing = ["data.corpus=" + str(tmp_path / "no-corpus"), "--out", str(tmp_path / "cmp")]
    assert cli.main(["compare", "--methods", "natural,acodm", "agent.options.gama=0.5", *missing]) == 2
    assert (
        "agent.options.gama is an option of none of the methods natural, acodm. Did you mean" in capsys.readouterr().err
    )
    assert cli.main(["compare", "--methods", "natural,acodm", "agent.options.gamma=2", *missing]) == 2
    assert "agent.options.gamma=2.0 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_reference_ships_to_a_named_path_or_a_checkout_never_into_an_installed_package(tmp_path):
    from acodm_gym.registry import TASK_DIR, TASKS
    from acodm_gym.runs.reference import ship_path

    assert ship_path("noisy", False) is None
    assert ship_path("noisy", tmp_path) == tmp_path / "noisy.references.json"
    assert ship_path("noisy", tmp_path / "r.json") == tmp_path / "r.json"
    assert ship_path("noisy", True) == TASK_DIR / "noisy.references.json"  # this checkout (setup.cfg beside it)
    installed = tmp_path / "lib" / "site-packages" / "acodm_gym" / "configs" / "tasks"
    installed.mkdir(parents=True)
    (installed / "inst.yaml").write_text("task: {}\n")
    TASKS.register("inst", installed / "inst.yaml")
    try:
        with pytest.raises(ConfigError, match="inside the installed package: give where to write it instead"):
            ship_path("inst", True)
    finally:
        TASKS.unregister("inst")


@pytest.fixture
def toys(tmp_path, config):
    """A toy entry in each registry but the agents' (see ``tally``), each removed after the test."""
    from acodm_gym.envs.state import StatePart
    from acodm_gym.registry import PLANTED_GENERATORS, STATE_PARTS, TASKS
    from acodm_gym.rewards import REWARD_VARIANTS, RewardVariant
    from acodm_gym.simplex import SCALARIZATIONS

    task = tmp_path / "toy.yaml"
    task.write_text(yaml.safe_dump({**config, "train": {**config["train"], "total_steps": 3}}))
    entries = [
        (TASKS, "toy-task", str(task)),  # a file path, not a lazy module:attr
        (REWARD_VARIANTS, "ones", RewardVariant(lambda a: np.ones(len(a.target)))),
        (SCALARIZATIONS, "double", lambda vector, alpha: 2 * (alpha * vector).sum(-1)),
        (PLANTED_GENERATORS, "repeat", lambda texts, n_bytes, seed: ["toy text\n" * 20] * (n_bytes // 180 + 1)),
        (STATE_PARTS, "bias", StatePart(lambda k, L: 1, lambda state, seen, step: [1.0])),
    ]
    for registry, name, entry in entries:
        registry.register(name, entry)
    yield
    for registry, name, _ in entries:
        registry.unregister(name)


TOY_OVERRIDES = ["env.reward_variant=ones", "env.scalarization=double", "env.drop_state=[bias]"]
TOY_RECIPE = ["data.recipe.shares={code: 1, junk: 1}", "data.recipe.planted={junk: {generator: repeat}}"]


def test_a_toy_entry_in_each_registry_is_reachable_from_the_config_and_the_cli(toys):
    import gymnasium as gym

    import acodm_gym

    cfg = load_config(None, [*TOY_OVERRIDES, *TOY_RECIPE], task="toy-task")
    assert (cfg.task.name, cfg.env.reward_variant, cfg.env.scalarization, cfg.env.drop_state) == (
        "toy-task",
        "ones",
        "double",
        ["bias"],
    )
    args = cli.parse_args(cli.build_parser(), ["train", "--task", "toy-task", *TOY_OVERRIDES, *TOY_RECIPE])
    assert cli._config(args).data.recipe.planted == {"junk": {"generator": "repeat"}}
    assert gym.spec(acodm_gym.register_task_envs()["toy-task"]).kwargs == {"task": "toy-task"}
    for bad, text in [
        ("env.reward_variant=one", "env.reward_variant='one' is not supported; choose one of paper, authors, ones"),
        ("env.scalarization=dbl", "choose one of alpha_weighted, sum, mean, double"),
        ("env.drop_state=[bais]", "unknown state parts ['bais']; choose from samples_seen"),
        (
            "data.recipe.planted={junk: {generator: rep}}",
            "unknown generator 'rep'; choose one of word_salad, boilerplate, repeat",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(text)):
            load_config(None, [bad, *TOY_RECIPE[:1]], task="toy-task")


def test_a_toy_entry_in_each_registry_is_what_the_env_and_the_recipe_use(toys, corpus):
    from acodm_gym.config import RecipeConfig
    from acodm_gym.data.recipes import apply_recipe
    from acodm_gym.envs.pretrain_env import PretrainEnv

    env = PretrainEnv(None, ["env.reward_variant=ones", "env.scalarization=double"], task="toy-task", corpus=corpus)
    try:
        layout = env.observation_layout()
        obs, _ = env.reset(seed=0)
        assert list(layout)[-1] == "bias" and obs[layout["bias"]].tolist() == [1.0]
        _, reward, _, _, info = env.step(np.full(env.k, 1.0 / env.k))
        assert np.all(info["vector_reward"] == 1.0) and reward == pytest.approx(2.0)
    finally:
        env.close()
    recipe = RecipeConfig(
        shares={"a": 1, "junk": 1}, planted={"junk": {"generator": "repeat"}}, heldout_bytes=200, chunk_bytes=100
    )
    split = apply_recipe(recipe, {"a": ["some clean text\n" * 400]})
    assert split["junk"]["train"] and all(doc.startswith("toy text") for doc in split["junk"]["train"])


def test_scalarize_refuses_an_unknown_mode_instead_of_averaging():
    from acodm_gym.simplex import scalarize

    assert scalarize(np.array([1.0, 3.0]), np.array([0.5, 0.5]), "mean") == 2.0
    with pytest.raises(ConfigError, match="env.scalarization='max' is not supported"):
        scalarize(np.array([1.0, 3.0]), np.array([0.5, 0.5]), "max")


def test_an_installed_package_adds_an_agent_through_the_entry_point_group(tmp_path, config):
    """No import of the package's code is needed: the name is read from its metadata, the class loaded on use."""
    site = tmp_path / "site"
    (site / "toy_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "toy_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n"
    )
    (site / "toy_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[acodm_gym.agents]\nplugged = toy_plugin:Plugged\n"
    )
    (site / "toy_plugin.py").write_text(
        "import numpy as np\nfrom acodm_gym.agents import Agent\n\n"
        "class Plugged(Agent):\n    def act(self, obs):\n        return np.full(self.k, 1.0 / self.k)\n"
    )
    code = (
        "import sys\nfrom acodm_gym.cli import main\nfrom acodm_gym.config import load_config\n"
        "assert load_config(None, ['agent.name=plugged']).agent.name == 'plugged'\n"
        "assert 'toy_plugin' not in sys.modules\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({**config, "train": {**config["train"], "total_steps": 3}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site), os.environ.get("PYTHONPATH", "")])}
    argv = ["train", "--config", str(path), "--agent", "plugged", "--out-dir", str(tmp_path), "run.plots=false"]
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "plugged-seed0" / "summary.json").read_text())["agent"] == "plugged"
