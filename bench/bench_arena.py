"""Throughput of the arena envs (`flexrl.arena`): Gymnasium `env.step` against raw `mujoco.mj_step`.

For each env and ball behaviour, the same random actions drive
  raw      a loop of `data.ctrl[:] = a; mujoco.mj_step(model, data, frame_skip)` on the env's model,
  env      `env.step(a)` of `gym.make(...)` (TimeLimit and the other default wrappers included),
and, inside the env run, the time spent in `mj_step` itself is measured too (`physics`), because a
moving ball changes the contacts and so the cost of the physics: `env / physics` is the cost of the
Python wrapper on the very same states, `env / raw` the one against a plain loop.
Then vectorised throughput (env steps/s over all sub-envs) with Sync/AsyncVectorEnv.

Prints a table and writes bench/results/arena.json.
    python bench/bench_arena.py [--steps 20000] [--vec-steps 4000]
"""
from __future__ import annotations
import os
os.environ.setdefault('MUJOCO_GL', 'egl')
import argparse, functools, json, platform, time
from pathlib import Path
import numpy as np
import mujoco
import gymnasium as gym
import flexrl.arena  # registers flexrl/Arena-v0, flexrl/AntArena-v0

RESULTS = Path(__file__).parent/'results'/'arena.json'


def actions(env, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, *env.action_space.shape)).astype(np.float32)


def time_raw(env, acts) -> float:
    "Seconds per step of a bare mj_step loop on a copy of the env's model, from its reset state."
    env.reset(seed=0)
    u = env.unwrapped
    m, d = u.model, mujoco.MjData(u.model)
    d.qpos[:], d.qvel[:], d.mocap_pos[:] = u.data.qpos, u.data.qvel, u.data.mocap_pos
    mujoco.mj_forward(m, d)
    fs, step = u.frame_skip, mujoco.mj_step
    t = time.perf_counter()
    for a in acts:
        d.ctrl[:] = a
        step(m, d, fs)
    return (time.perf_counter() - t) / len(acts)


def time_env(env, acts) -> tuple[float, float]:
    "Seconds per `env.step` (resetting when an episode ends) and the part of it spent in `mj_step`."
    env.reset(seed=0)
    orig, spent = mujoco.mj_step, [0.0]
    def timed(m, d, n=1):
        t0 = time.perf_counter(); orig(m, d, n); spent[0] += time.perf_counter() - t0
    step, n = env.step, len(acts)
    mujoco.mj_step = timed
    try:
        t = time.perf_counter()
        for a in acts:
            _, _, term, trunc, _ = step(a)
            if term or trunc: env.reset()
        total = time.perf_counter() - t
    finally: mujoco.mj_step = orig
    return total / n, spent[0] / n


def time_plain_env(env, acts) -> float:
    "Seconds per `env.step` without the instrumentation."
    env.reset(seed=0)
    step = env.step
    t = time.perf_counter()
    for a in acts:
        _, _, term, trunc, _ = step(a)
        if term or trunc: env.reset()
    return (time.perf_counter() - t) / len(acts)


def time_vec(env_id, n_envs, mode, steps, **kw) -> float:
    "Env steps per second (summed over sub-envs) of a vector env."
    fns = [functools.partial(gym.make, env_id, **kw)] * n_envs
    venv = gym.vector.AsyncVectorEnv(fns) if mode == 'async' else gym.vector.SyncVectorEnv(fns)
    venv.reset(seed=0)
    acts = np.random.default_rng(0).uniform(-1, 1, (steps, *venv.action_space.shape)).astype(np.float32)
    for a in acts[:50]: venv.step(a)  # warm up
    t = time.perf_counter()
    for a in acts: venv.step(a)
    dt = time.perf_counter() - t
    venv.close()
    return steps * n_envs / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=20000, help='env steps per single-env measurement (Ant: a tenth)')
    ap.add_argument('--vec-steps', type=int, default=4000, help='vector steps per vector-env measurement')
    args = ap.parse_args()

    single = []
    cases = [('flexrl/Arena-v0', b) for b in flexrl.arena.BALL_BEHAVIOURS] + [('flexrl/AntArena-v0', 'static'), ('flexrl/AntArena-v0', 'chaser')]
    for env_id, ball in cases:
        env = gym.make(env_id, ball=ball)
        n = args.steps // (10 if 'Ant' in env_id else 1)
        acts = actions(env, n)
        time_plain_env(env, acts[:200]); time_raw(env, acts[:200])  # warm up
        raw = time_raw(env, acts)
        plain = time_plain_env(env, acts)
        total, phys = time_env(env, acts)
        single.append(dict(env=env_id, ball=ball, frame_skip=env.unwrapped.frame_skip, steps=n,
                           raw_steps_per_s=1 / raw, env_steps_per_s=1 / plain, physics_us=phys * 1e6,
                           overhead_us=(total - phys) * 1e6, env_over_raw=plain / raw, env_over_physics=total / phys))
        env.close()

    vec = []
    for env_id, steps in (('flexrl/Arena-v0', args.vec_steps), ('flexrl/AntArena-v0', args.vec_steps // 4)):
        for mode in ('sync', 'async'):
            for n in (1, 2, 4):
                if mode == 'async' and n == 1: continue
                vec.append(dict(env=env_id, mode=mode, n_envs=n, steps_per_s=time_vec(env_id, n, mode, steps)))

    print(f"\nsingle env ({os.cpu_count()} cores, mujoco {mujoco.__version__}, gymnasium {gym.__version__})")
    print(f"{'env':22} {'ball':8} {'fs':>3} {'raw st/s':>9} {'env st/s':>9} {'env/raw':>8} {'physics us':>10} {'wrapper us':>10} {'env/phys':>8}")
    for r in single:
        print(f"{r['env']:22} {r['ball']:8} {r['frame_skip']:3d} {r['raw_steps_per_s']:9.0f} {r['env_steps_per_s']:9.0f} "
              f"{r['env_over_raw']:8.2f} {r['physics_us']:10.1f} {r['overhead_us']:10.1f} {r['env_over_physics']:8.2f}")
    print(f"\nvector envs (env steps/s over all sub-envs)\n{'env':22} {'mode':6} {'n_envs':>6} {'steps/s':>9}")
    for r in vec: print(f"{r['env']:22} {r['mode']:6} {r['n_envs']:6d} {r['steps_per_s']:9.0f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(cpus=os.cpu_count(), python=platform.python_version(), mujoco=mujoco.__version__, gymnasium=gym.__version__,
                machine=platform.machine(), time=time.strftime('%Y-%m-%dT%H:%M:%S'))
    RESULTS.write_text(json.dumps(dict(meta=meta, single=single, vector=vec), indent=1))
    print(f'\nwrote {RESULTS}')


if __name__ == '__main__': main()
