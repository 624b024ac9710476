"""Skill library benchmark: train the default library with params/train_skills.yaml on this machine, then
measure every skill's success over 100 fresh episodes against a random policy (same episodes, same run).

  python bench/bench_skills.py [key=value ...]     # overrides of params/train_skills.yaml

Prints a table and writes bench/results/skills.json. Trains into a throw-away FLEXRL_HOME (the real
default library is left alone). Goals (issue): every skill >= 90% success, the library in <= 15 minutes."""
import json, os, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ['FLEXRL_HOME'] = tempfile.mkdtemp(prefix='flexrl-bench-skills-')
os.environ.pop('MLFLOW_TRACKING_URI', None)
from flexrl.skills import load_train_config, train_skills, make_skill_env, random_success


def main(overrides):
    cfg = load_train_config(ROOT/'params'/'train_skills.yaml', ['library=bench', 'progress=false', *overrides])
    t0 = time.time()
    lib = train_skills(cfg)
    wall = time.time() - t0
    env = make_skill_env(env_id=cfg.env_id, episode_steps=cfg.episode_steps, init_speed=cfg.init_speed, **cfg.env_kwargs)
    n = cfg.final_eval_episodes
    rows = [{'skill': s, 'success': lib.success_rates()[s], 'random': random_success(env, s, n)} for s in lib.names]
    pol = lib.manifest['policies']
    result = {'machine': f'{os.cpu_count()} cpus', 'episodes_per_skill': n, 'train_wall_s': round(wall, 1),
              'timesteps': {p: v['timesteps'] for p, v in pol.items()},
              'steps_per_s': round(sum(v['timesteps'] for v in pol.values()) / sum(v['train_seconds'] for v in pol.values()), 1),
              'skills': rows, 'goal_success': 0.9, 'goal_wall_s': 900,
              'passed': all(r['success'] >= 0.9 for r in rows) and wall <= 900}
    print(f"\nskill library: {sum(result['timesteps'].values())} timesteps, {wall:.0f} s wall "
          f"(training {result['steps_per_s']:.0f} steps/s), {n} episodes per skill\n")
    print(f"{'skill':<12}{'trained':>10}{'random':>10}")
    for r in rows: print(f"{r['skill']:<12}{r['success']:>10.0%}{r['random']:>10.0%}")
    print(f"\ngoal: every skill >= 90% and <= 900 s: {'PASS' if result['passed'] else 'FAIL'}")
    out = ROOT/'bench'/'results'/'skills.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f'written {out}')
    return 0 if result['passed'] else 1


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
