"""`--algorithm rl`: HAQ's reinforcement-learning precision agent as a pymoo `Algorithm`.

The agent is a stable-baselines3 off-policy agent (`--rl-agent ddpg`, HAQ's; or `td3`) acting in
the precision environment `hwq.search.env` (one free group per step, HAQ's budget enforcement
at the end, HAQ's accuracy reward). It is driven by the search driver's one loop, so that one
episode is one evaluated policy and every generation evaluates exactly `population` policies:

* **ask**: `population` episodes run side by side (the env's arrays, `EnvTables`, over the whole
  batch; one actor forward per step for all episodes). Each episode draws its budget (a Latin
  hypercube of budget fractions over the generation, so that the episodes spread along the
  front). During the warm-up (`warmup_generations`, default one generation: SB3's
  `learning_starts` = that many episodes' transitions) actions are uniform in [0, 1], as HAQ's
  `random_action`; afterwards the actor's action plus HAQ's exploration: a normal truncated to
  [0, 1] around it (drawn by its inverse CDF, whole arrays), sigma =
  ``noise_sigma * noise_decay ** (episode - warm-up episodes)`` (HAQ: 0.5, 0.99). The actor
  runs as a plain torch forward on the batch (no RNG), so a rollout of P episodes over T groups
  costs T actor forwards. The enforced policies are the generation's candidates.
* **tell**: the driver evaluated them; each episode's reward (`hwq.search.env.Reward`; its
  q_ref and lambda fixed from the first generation's qualities) is fed back into the replay
  buffer as the final-step reward. With discount 1 and no reward before the last step, the
  return from every step of an episode equals that final reward, so every transition of the
  episode is stored with it as a terminal (Monte-Carlo) target — what HAQ does when it
  `observe`s the final reward at every step of the episode. Then the agent trains
  (``model.train``), from the end of the warm-up on, a fixed `gradient_steps` (64) per
  generation in batches of `batch_size` (512): 32,768 samples a generation whatever the
  population, so a generation's cost does not grow with it (HAQ's 64 samples per transition,
  n_update 1 with batch 64, is that at 10 episodes of 50 groups; a quarter step per stored
  transition in batches of 256, as before, took 15-30 ms a step on a loaded CPU, 20 s a
  generation at 100 episodes of ResNet-50). The buffer keeps the last `buffer_episodes`
  episodes (HAQ's rmsize: 128). Nothing depends on the number of generations, so the first
  B evaluations of a run are those of any longer run with the same population and seed.

Any stable-baselines3 off-policy agent with an actor that `predict`s plugs in (`AGENTS`); the
env itself also trains with SB3's own `learn` (see `hwq.search.env`).

Determinism and resume: every random draw comes from the algorithm's generator (pymoo's
`random_state`, seeded from the run's seed). Torch and NumPy's global generators, which SB3 uses
(replay sampling, TD3's target noise, weight initialisation), are seeded from it around every
SB3 call and restored afterwards, and torch runs one intra-op thread there, so results do not
depend on the machine's cores. Checkpoints pickle the agent as its parameters and optimizer
states (``get_parameters``), its replay buffer and update count; a resumed run rebuilds the
agent and loads them, and proposes the same candidates as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pymoo.core.algorithm import Algorithm
from pymoo.core.population import Population

from hwq.search.algorithm_base import CheckpointSafe, SingleSpecies
from hwq.search.env import EnvTables, PrecisionEnv, Reward, reward_quality
from hwq.search.indicators import order_by_rank, rank_and_crowding

# --rl-agent name -> stable-baselines3 class (names: hwq.search.config.RL_AGENTS)
AGENTS: dict[str, str] = {"ddpg": "DDPG", "td3": "TD3"}


@dataclass
class RLParams:
    """The agent's constants (HAQ's where it has one; written to config.yaml)."""

    agent: str = "ddpg"
    warmup_generations: int = 1  # uniform random actions; learning starts after them
    noise_sigma: float = 0.5  # HAQ init_delta (actions in [0, 1])
    noise_decay: float = 0.99  # HAQ delta_decay, per episode after the warm-up
    batch_size: int = 512  # (HAQ: 64)
    learning_rate: float = 1e-3  # SB3's default, actor and critic (HAQ: 1e-4 / 1e-3)
    tau: float = 0.01  # HAQ
    net_arch: list[int] = field(default_factory=lambda: [64, 64])  # HAQ: 300, 300 (the
    # state has 20-50 entries; the smaller net trains ~3x faster on a CPU at the same result)
    buffer_episodes: int = 128  # HAQ rmsize (episodes)
    gradient_steps: int = 64  # per generation after the warm-up, whatever the population

    @classmethod
    def of(cls, config: Any) -> RLParams:
        return cls(agent=str(config.rl_agent))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def seeded_globals(seed: int) -> Iterator[None]:
    """Torch's and NumPy's global generators seeded with `seed` inside the block (and put back
    afterwards), torch on one intra-op thread."""
    import torch

    from hwq.torch_threads import one_thread

    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)


def truncated_normal(
    rng: np.random.Generator, mu: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """HAQ's exploration: normal(mu, sigma) truncated to [0, 1] (sigma broadcast over mu), by
    its inverse CDF: ``mu + sigma * Phi^-1(Phi(a) + u (Phi(b) - Phi(a)))`` with u uniform, one
    draw per entry (mu lies in [0, 1], so Phi(a) <= 1/2 <= Phi(b) and no tail cancels)."""
    from scipy.special import ndtr, ndtri

    mu = np.clip(np.asarray(mu, dtype=np.float64), 0.0, 1.0)
    sigma = np.broadcast_to(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-12), mu.shape)
    lo, hi = ndtr((0.0 - mu) / sigma), ndtr((1.0 - mu) / sigma)
    p = lo + rng.random(mu.shape) * (hi - lo)
    x = mu + sigma * ndtri(np.clip(p, 1e-300, 1.0 - 1e-16))
    return np.clip(x, 0.0, 1.0)


def actor_actions(model: Any, obs: np.ndarray) -> np.ndarray:
    """float64 [E, A] in [0, 1]: the deterministic actor's actions on states [E, D] (SB3's
    ``predict(deterministic=True)`` on the [0, 1] action box: its tanh output mapped from
    [-1, 1]), one torch forward, no random draw."""
    import torch

    with torch.no_grad():
        a = model.actor(torch.as_tensor(np.asarray(obs, dtype=np.float32))).numpy()
    return 0.5 * (a.astype(np.float64) + 1.0)


class RLSearch(CheckpointSafe, SingleSpecies, Algorithm):
    """A stable-baselines3 agent proposing `pop_size` policies per generation (module doc)."""

    name = "rl"

    def __init__(self, pop_size: int = 20, params: RLParams | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pop_size = int(pop_size)
        self.params = params if params is not None else RLParams()
        if self.params.agent not in AGENTS:
            raise ValueError(f"unknown RL agent {self.params.agent!r} (known: {', '.join(AGENTS)})")
        self.episodes = 0
        self.reward: Reward | None = None
        self.agent_seed = 0
        self._agent_state: dict[str, Any] | None = None  # a checkpoint's agent, loaded on use
        self._model: Any = None
        self._tables: EnvTables | None = None
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def warmup_episodes(self) -> int:
        return int(self.params.warmup_generations) * self.pop_size

    def _setup(self, problem: Any, **kwargs: Any) -> None:
        self.agent_seed = int(self.random_state.integers(2**31 - 1))

    # -- checkpoints: the agent as parameters + replay buffer; tables rebuilt from the problem --
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if self._model is not None:
            state["_agent_state"] = {
                "params": self._model.get_parameters(),
                "replay_buffer": self._model.replay_buffer,
                "n_updates": int(self._model._n_updates),
            }
        state["_model"] = None
        state["_tables"] = None
        return state

    def tables(self) -> EnvTables:
        if self._tables is None:
            self._tables = EnvTables.of(self.problem)
        return self._tables

    def agent(self) -> Any:
        """The stable-baselines3 model (built on first use, or rebuilt from a checkpoint)."""
        if self._model is None:
            self._model = self._build_agent()
        return self._model

    def _build_agent(self) -> Any:
        import stable_baselines3 as sb3
        from stable_baselines3.common.buffers import ReplayBuffer
        from stable_baselines3.common.logger import Logger

        p, tab = self.params, self.tables()
        env = PrecisionEnv(self.problem, evaluate=False, tables=tab)
        cls = getattr(sb3, AGENTS[p.agent])
        with seeded_globals(self.agent_seed):
            model = cls(
                "MlpPolicy",
                env,
                learning_rate=p.learning_rate,
                buffer_size=1,
                learning_starts=0,
                batch_size=p.batch_size,
                tau=p.tau,
                gamma=1.0,
                policy_kwargs={"net_arch": list(p.net_arch)},
                device="cpu",
                verbose=0,
            )
        model.set_logger(Logger(folder=None, output_formats=[]))
        generations_kept = -(-int(p.buffer_episodes) // self.pop_size)
        model.replay_buffer = ReplayBuffer(
            generations_kept * tab.n_groups * self.pop_size,
            env.observation_space,
            env.action_space,
            device="cpu",
            n_envs=self.pop_size,
            handle_timeout_termination=False,
        )
        if self._agent_state is not None:
            model.set_parameters(self._agent_state["params"], exact_match=True, device="cpu")
            model.replay_buffer = self._agent_state["replay_buffer"]
            model._n_updates = int(self._agent_state["n_updates"])
            self._agent_state = None
        return model

    # -- ask: a generation of episodes -----------------------------------------------------------
    def _episodes(self) -> Population:
        tab, p, rng = self.tables(), self.params, self.random_state
        E, T, A = self.pop_size, tab.n_groups, tab.n_actions
        frac = tab.draw_budgets(rng, E)
        warm = self.episodes < self.warmup_episodes
        after = np.maximum(self.episodes + np.arange(E) - self.warmup_episodes, 0)
        sigma = (p.noise_sigma * p.noise_decay ** after)[:, None]
        model = None if warm else self.agent()
        obs = np.zeros((T, E, tab.obs_dim), dtype=np.float32)
        act = np.zeros((T, E, A))
        choice = np.zeros((E, T), dtype=np.int64)
        prev = np.zeros((E, A))
        from hwq.torch_threads import one_thread

        with one_thread():
            for t in range(T):  # one step for all episodes at once
                o = tab.observe(t, prev, frac, choice)
                if model is None:
                    a = rng.random((E, A))
                else:
                    a = truncated_normal(rng, actor_actions(model, o).reshape(E, A), sigma)
                choice[:, t] = tab.choose(t, a)
                obs[t], act[t], prev = o, a, a
        final = tab.enforce(choice, frac)
        self._pending = (obs, act)
        return Population.new("X", self.problem.encoding.X_from_choice_index(final))

    # -- tell: rewards into the replay buffer, then training --------------------------------------
    def _learn(self, infills: Population) -> None:
        assert self._pending is not None, "tell without ask"
        obs, act = self._pending
        self._pending = None
        q = reward_quality(self.problem, infills.get("F"))
        if self.reward is None:
            self.reward = Reward.from_warmup(q)
        r = self.reward(q, infills.get("G")).astype(np.float32)
        model = self.agent()
        T, E = obs.shape[0], obs.shape[1]
        done = np.ones(E, dtype=np.float32)
        infos: list[dict[str, Any]] = [{} for _ in range(E)]
        scaled = (2.0 * act - 1.0).astype(np.float32)  # SB3 stores actions in [-1, 1]
        for t in range(T):
            nxt = obs[t + 1] if t + 1 < T else obs[t]
            model.replay_buffer.add(obs[t], nxt, scaled[t], r, done, infos)
        self.episodes += E
        if self.episodes >= self.warmup_episodes:
            with seeded_globals(int(self.random_state.integers(2**31 - 1))):
                model.train(gradient_steps=int(self.params.gradient_steps),
                            batch_size=int(self.params.batch_size))

    def _initialize_infill(self) -> Population:
        return self._episodes()

    def _initialize_advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self._learn(infills)
        self._keep(infills)

    def _infill(self) -> Population:
        return self._episodes()

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self._learn(infills)
        self._keep(Population.merge(self.pop, infills))

    def _keep(self, pool: Population) -> None:
        rank, crowd = rank_and_crowding(pool.get("F"), pool.get("CV").reshape(-1))
        order = order_by_rank(rank, crowd)
        self.pop = pool[order[rank[order] == rank[order[0]]]]
