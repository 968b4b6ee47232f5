"""Launchers: every dry run, checked against the binaries' own flags.

* Each example run config (one per launcher) renders through
  `python -m launch.render --dry_run`; the printed commands are the cluster
  tools' (gcloud tpu-vm create/ssh --worker=all, xpk workload create,
  sbatch + srun), and every `python -m experiments.X ...` in them names a
  binary file that exists and parses under X's absl flags.
* A real (non-dry) run with fake gcloud/xpk/sbatch/srun/git on PATH executes
  exactly the commands the dry run printed, and a dry run executes nothing.
* Every binary under experiments/ (whatever is there) is checkable: its
  flags load and an unknown flag is rejected.
* Bad configs, unknown flags, bad enum values, missing required flags and
  misspelt binaries are refused with a message naming them.
"""

import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from cbench._validate import CbenchError
from launch import render

ROOT = render.ROOT
EXAMPLES = os.path.join(ROOT, "launch", "examples")
CONFIGS = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".json"))
TOOLS = ("gcloud", "xpk", "sbatch", "srun", "git")


def _render(*args, env=None):
  return subprocess.run([sys.executable, "-m", "launch.render", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=env)


def _lines(text):
  return [l for l in text.splitlines() if l.strip() and not l.startswith("#")]


def test_one_example_per_launcher():
  launchers = {json.load(open(os.path.join(EXAMPLES, f)))["launcher"]
               for f in CONFIGS}
  assert launchers == set(render.LAUNCHERS)


@pytest.mark.parametrize("name", CONFIGS)
def test_example_dry_run_names_real_binaries_and_flags(name):
  path = os.path.join(EXAMPLES, name)
  cfg = render.load_config(path)
  proc = _render(f"--config={path}", "--dry_run")
  assert proc.returncode == 0, proc.stderr
  lines = _lines(proc.stdout)
  argvs = [shlex.split(l) for l in lines]
  if cfg.launcher == "tpu_vm":
    ssh = [a for a in argvs if a[:5] == ["gcloud", "compute", "tpus",
                                         "tpu-vm", "ssh"]]
    assert ssh and all("--worker=all" in a for a in ssh)
    assert argvs[0][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
    assert "CBENCH_DISTRIBUTED=1" in ssh[-1][-1]
  elif cfg.launcher == "xpk":
    assert len(argvs) == 1 and argvs[0][:3] == ["xpk", "workload", "create"]
    assert "CBENCH_DISTRIBUTED=1" in argvs[0][-1]
  else:
    assert [a[0] for a in argvs] == ["sbatch", "srun"]
    assert "--export=ALL,CBENCH_DISTRIBUTED=1" in argvs[1]
    assert f"--ntasks-per-node={cfg.topology.gpus_per_node}" in argvs[1]
  commands = [(m, a) for m, a in render.extract_python_commands(proc.stdout)
              if m.startswith("experiments.")]
  assert commands and {m for m, _ in commands} == {cfg.module}
  for module, args in commands:
    assert os.path.isfile(os.path.join(ROOT, *module.split(".")) + ".py")
    assert args == render.python_command(cfg)[3:]
  # Independently of render's own check: the binary's flags accept them.
  assert render.check_flags(commands) == []


def test_every_binary_in_experiments_is_checkable():
  names = render.binaries()
  assert {"make_release", "train", "score_qa", "pretrain_base"} <= set(names)
  assert "common" not in names and not any(n.endswith("_test") for n in names)
  # Each binary imports, defines its flags and rejects an unknown one (an
  # import failure would give a different message).
  errors = render.check_flags(
      [(f"experiments.{n}", ["--cbench_no_such_flag=1"]) for n in names])
  assert len(errors) == len(names), errors
  for n, e in zip(names, errors):
    assert e.startswith(f"experiments.{n} ") and (
        "UnrecognizedFlagError" in e and "cbench_no_such_flag" in e), e


def test_flagcheck_lists_a_binarys_own_flags():
  listed = subprocess.run(
      [sys.executable, "-m", "launch.flagcheck", "experiments.train",
       "--list"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert listed.returncode == 0, listed.stderr
  assert {"base", "corpus", "workdir"} <= set(json.loads(listed.stdout))
  bad = subprocess.run(
      [sys.executable, "-m", "launch.flagcheck", "experiments.common"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, input="[]")
  assert bad.returncode == 2 and "not a binary" in bad.stderr


def test_check_flags_rejects_what_the_binary_would_reject():
  ok = ["--base=b", "--corpus=c", "--workdir=w"]
  errors = render.check_flags([
      ("experiments.train", ok),
      ("experiments.train", ok + ["--recipe=huge"]),
      ("experiments.train", ["--base=b", "--corpus=c"]),
      ("experiments.trian", ok),
      ("venv", [".venv"]),  # `python3 -m venv`: not a binary, not checked.
  ])
  assert len(errors) == 3, errors
  assert "recipe" in errors[0] and "huge" in errors[0]
  assert "workdir" in errors[1]
  assert "experiments/trian.py" in errors[2]


def test_render_refuses_unknown_flags_with_a_named_error(tmp_path):
  raw = json.load(open(os.path.join(EXAMPLES, "xpk_train.json")))
  raw["flags"]["recipie"] = "tiny"
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(raw))
  proc = _render(f"--config={path}", "--dry_run")
  assert proc.returncode == 1
  assert proc.stdout == ""
  assert "recipie" in proc.stderr and proc.stderr.startswith("error: ")


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r.update(launcher="k8s"), "launcher"),
    (lambda r: r.update(binary="trian"), "binary"),
    (lambda r: r["xpk"].update(tpu_typ="v5"), "tpu_typ"),
    (lambda r: r["xpk"].pop("cluster"), "cluster"),
    (lambda r: r.update(slurm={}), "slurm"),
    (lambda r: r.update(env={"A B": "1"}), "env"),
    (lambda r: r["flags"].update(corpus="{workdir}/c") or r.pop("workdir"),
     "workdir"),
])
def test_bad_configs_are_named(mutate, needle):
  raw = json.load(open(os.path.join(EXAMPLES, "xpk_train.json")))
  mutate(raw)
  with pytest.raises(CbenchError, match=needle):
    cfg = render.parse_config(raw)
    render.python_command(cfg)


def test_flag_rendering():
  cfg = render.parse_config({
      "launcher": "slurm", "binary": "score_qa", "workdir": "/w/",
      "flags": {"release": "{workdir}/r", "split": ["a", "b"],
                "out": "/o x", "checkpoint": "/c", "verbose_x": False,
                "flag_y": True, "n": 3}})
  assert render.python_command(cfg) == [
      "python", "-m", "experiments.score_qa", "--release=/w/r", "--split=a,b",
      "--out=/o x", "--checkpoint=/c", "--noverbose_x", "--flag_y", "--n=3"]


def test_extract_python_commands_handles_quoting_and_remote_lines():
  remote = ("cd a && export A=1 'B=x y' && python -m experiments.train "
            "'--corpus=a b' --workdir=w")
  text = "\n".join([
      "# comment python -m experiments.nope",
      "gcloud x ssh n " + shlex.quote("--command=" + remote),
      "srun --chdir=/r /v/bin/python3 -m experiments.score_qa --release=r",
      "tpu-vm ssh '--command=cd c && python3 -m venv .venv && pip install .'",
  ])
  assert render.extract_python_commands(text) == [
      ("experiments.train", ["--corpus=a b", "--workdir=w"]),
      ("experiments.score_qa", ["--release=r"]),
      ("venv", [".venv"]),
  ]


def _fake_tools(tmp_path):
  bindir = tmp_path / "bin"
  bindir.mkdir()
  log = tmp_path / "calls.jsonl"
  for tool in TOOLS:
    p = bindir / tool
    p.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        f"  f.write(json.dumps([os.path.basename(sys.argv[0])] + "
        f"sys.argv[1:]) + '\\n')\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
  env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
  return env, log


def _calls(log):
  if not log.exists():
    return []
  return [json.loads(l) for l in log.read_text().splitlines()]


@pytest.mark.parametrize("name", CONFIGS)
def test_real_run_executes_exactly_the_dry_run_commands(tmp_path, name):
  env, log = _fake_tools(tmp_path)
  cfg = render.load_config(os.path.join(EXAMPLES, name))
  dry = subprocess.run(render.script_command(cfg, dry_run=True), cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
  assert dry.returncode == 0, dry.stderr
  assert _calls(log) == []  # A dry run runs nothing.
  expected = [shlex.split(l) for l in _lines(dry.stdout)]
  if cfg.launcher == "slurm":
    submit = render.sbatch_command(cfg)
    subprocess.run(submit, cwd=ROOT, env=env, check=True, timeout=60)
    assert _calls(log) == [submit]
    # What sbatch would run inside a 2-node allocation:
    job_env = dict(env, SLURM_JOB_ID="42", SLURM_SUBMIT_DIR=ROOT,
                   SLURM_JOB_NUM_NODES=str(cfg.topology.nodes),
                   SLURM_NTASKS_PER_NODE=str(cfg.topology.gpus_per_node))
    # sbatch runs a spooled copy of the script, from elsewhere.
    spool = tmp_path / "spool"
    spool.mkdir()
    copy = spool / "slurm_script"
    copy.write_text(open(os.path.join(ROOT, "launch", "slurm.sbatch")).read())
    script = submit[submit.index("launch/slurm.sbatch") + 1:]
    subprocess.run(["bash", str(copy), *script], cwd=str(spool), env=job_env,
                   check=True, timeout=60)
    assert _calls(log)[1:] == expected
  else:
    real = render.script_command(cfg, dry_run=False)
    subprocess.run(real, cwd=ROOT, env=env, check=True, timeout=60)
    assert _calls(log) == expected


@pytest.mark.parametrize("script,args,needle", [
    ("tpu_vm.sh", ["--zone=z", "--", "python"], "--name is required"),
    ("tpu_vm.sh", ["--name=n", "--zone=z"], "missing the command"),
    ("tpu_vm.sh", ["--name=n", "--zone=z", "--create", "--", "p"],
     "--accelerator_type"),
    ("tpu_vm.sh", ["--bogus", "--", "p"], "unknown option --bogus"),
    ("xpk.sh", ["--cluster=c", "--workload=w", "--docker_image=i", "--",
                "p"], "exactly one of --tpu_type and --device_type"),
    ("xpk.sh", ["--cluster=c", "--workload=w", "--docker_image=i",
                "--tpu_type=t", "--num_slices=0", "--", "p"], "--num_slices"),
    ("slurm.sbatch", ["--env=A=1,2", "--", "p"], "commas"),
    ("slurm.sbatch", ["--env=1A=x", "--", "p"], "NAME=VALUE"),
    ("slurm.sbatch", ["--nodes=two", "--", "p"], "--nodes"),
])
def test_script_usage_errors(tmp_path, script, args, needle):
  env, log = _fake_tools(tmp_path)
  proc = subprocess.run(["bash", f"launch/{script}", "--dry_run", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.startswith(f"error: {needle}") or needle in (
      proc.stderr.splitlines()[0])
  assert "Usage" in proc.stderr or "--dry_run" in proc.stderr
  assert _calls(log) == []


@pytest.mark.parametrize("script", ["tpu_vm.sh", "xpk.sh", "slurm.sbatch"])
def test_script_help(script):
  proc = subprocess.run(["bash", f"launch/{script}", "--help"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0
  assert "--dry_run" in proc.stdout and "python -m experiments." in (
      proc.stdout)


@pytest.mark.parametrize("script, args", [
    ("tpu_vm.sh", ["--name=n", "--zone=z"]),
    ("xpk.sh", ["--cluster=c", "--workload=w", "--docker_image=i",
                "--tpu_type=t"]),
    ("slurm.sbatch", []),
])
def test_dry_run_catches_a_misspelled_binary_flag(tmp_path, script, args):
  env, log = _fake_tools(tmp_path)
  command = ["--", "python", "-m", "experiments.train", "--corpus=c",
             "--workdr=w", "--base=b"]
  proc = subprocess.run(["bash", f"launch/{script}", "--dry_run", *args,
                         *command], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  first = proc.stderr.splitlines()[0]
  assert first.startswith("error: experiments.train rejects its flags")
  assert "'workdr'" in first and proc.stdout == ""
  assert _calls(log) == []
  good = [c if c != "--workdr=w" else "--workdir=w" for c in command]
  ok = subprocess.run(["bash", f"launch/{script}", "--dry_run", *args, *good],
                      cwd=ROOT, env=env, capture_output=True, text=True,
                      timeout=120)
  assert ok.returncode == 0, ok.stderr
  assert "--workdir=w" in ok.stdout
