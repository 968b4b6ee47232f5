r"""Renders (and runs) a cluster launch from a JSON run config.

  python -m launch.render --config=launch/examples/tpu_vm_train.json --dry_run
  python -m launch.render --config=my_run.json          # really launches

A run config names the launcher, the binary, its flags, the topology and
where code and outputs live:

  {"launcher": "tpu_vm" | "xpk" | "slurm",
   "binary": "train",                       # experiments/train.py
   "workdir": "gs://my-bucket/cbench/run1", # substituted for {workdir}
   "flags": {"base": "{workdir}/base", "config": "tiny", "overwrite": true},
   "env": {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.9"},
   "repo_dir": "cbench", "venv": ".venv",   # where cbench lives (per launcher)
   "tpu_vm": {"name": ..., "zone": ..., "accelerator_type": ..., ...},
   "xpk": {"cluster": ..., "workload": ..., "docker_image": ..., ...},
   "slurm": {"nodes": 2, "gpus_per_node": 8, "partition": ..., ...}}

(only the section of the chosen launcher). Flag values: strings and numbers
render as ``--name=value``, true/false as ``--name``/``--noname``, lists
comma-joined.

The commands come from the launcher scripts themselves (`launch/tpu_vm.sh`,
`launch/xpk.sh`, `launch/slurm.sbatch`): ``--dry_run`` runs the script with
``--dry_run`` and prints exactly what it would run. Before anything runs
(dry or not), every ``python -m experiments.X ...`` in those commands is
checked against X's own absl flag definitions (`launch.flagcheck`, one
subprocess per binary): a missing binary, an unknown flag, a bad value or a
missing required flag stops the launch with exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from typing import Any, Optional, Sequence

from cbench._validate import CbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = ("tpu_vm", "xpk", "slurm")
SCRIPTS = {"tpu_vm": "launch/tpu_vm.sh", "xpk": "launch/xpk.sh",
           "slurm": "launch/slurm.sbatch"}
_NOT_BINARIES = ("__init__", "common")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_SEPARATORS = ("&&", "||", ";", "|")


# A bad run config or a command that would fail; the message names the field.
LaunchError = CbenchError


@dataclasses.dataclass(frozen=True, kw_only=True)
class TpuVm:
  """A Cloud TPU VM (slice or pod); see launch/tpu_vm.sh."""
  name: str
  zone: str
  project: Optional[str] = None
  accelerator_type: Optional[str] = None
  runtime_version: Optional[str] = None
  create: bool = False
  copy: bool = False
  setup: bool = False
  delete: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Xpk:
  """A GKE workload through XPK; see launch/xpk.sh."""
  cluster: str
  workload: str
  docker_image: str
  tpu_type: Optional[str] = None
  device_type: Optional[str] = None
  num_slices: int = 1
  num_nodes: Optional[int] = None
  project: Optional[str] = None
  zone: Optional[str] = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Slurm:
  """A SLURM allocation, one task per GPU; see launch/slurm.sbatch."""
  nodes: int = 1
  gpus_per_node: int = 8
  partition: Optional[str] = None
  time: Optional[str] = None
  account: Optional[str] = None
  job_name: str = "cbench"
  output: Optional[str] = None


_TOPOLOGIES = {"tpu_vm": TpuVm, "xpk": Xpk, "slurm": Slurm}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
  """One launch: binary + flags on a topology (see the module docstring)."""
  launcher: str
  binary: str
  topology: Any
  flags: tuple[tuple[str, Any], ...] = ()
  env: tuple[tuple[str, str], ...] = ()
  workdir: Optional[str] = None
  repo_dir: Optional[str] = None
  venv: Optional[str] = None

  @property
  def module(self) -> str:
    return f"experiments.{self.binary}"


def binaries(root: str = ROOT) -> list[str]:
  """Names of the binaries under experiments/ (X for experiments/X.py)."""
  out = []
  for fn in sorted(os.listdir(os.path.join(root, "experiments"))):
    name, ext = os.path.splitext(fn)
    if (ext == ".py" and name not in _NOT_BINARIES
        and not name.endswith("_test") and _NAME.match(name)):
      out.append(name)
  return out


def _fields(cls, raw: Any, where: str) -> dict:
  if not isinstance(raw, dict):
    raise LaunchError(f"{where} must be a JSON object.")
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(raw) - known)
  if unknown:
    raise LaunchError(f"{where}: unknown field(s) {unknown}; known: "
                      f"{sorted(known)}.")
  missing = sorted(f.name for f in dataclasses.fields(cls)
                   if f.name not in raw
                   and f.default is dataclasses.MISSING)
  if missing:
    raise LaunchError(f"{where}: missing field(s) {missing}.")
  return raw


def parse_config(raw: dict, where: str = "config") -> RunConfig:
  """A `RunConfig` from parsed JSON; LaunchError names the bad field."""
  if not isinstance(raw, dict):
    raise LaunchError(f"{where} must be a JSON object.")
  launcher = raw.get("launcher")
  if launcher not in LAUNCHERS:
    raise LaunchError(f"{where}: launcher={launcher!r}; expected one of "
                      f"{list(LAUNCHERS)}.")
  extra = sorted(set(raw) - {"launcher", "binary", "flags", "env", "workdir",
                             "repo_dir", "venv", *LAUNCHERS})
  if extra:
    raise LaunchError(f"{where}: unknown field(s) {extra}.")
  other = sorted(k for k in LAUNCHERS if k in raw and k != launcher)
  if other:
    raise LaunchError(f"{where}: section(s) {other} do not belong to "
                      f"launcher={launcher!r}.")
  binary = raw.get("binary")
  if not isinstance(binary, str) or binary not in binaries():
    raise LaunchError(f"{where}: binary={binary!r} is not one of "
                      f"experiments/{{{','.join(binaries())}}}.py.")
  cls = _TOPOLOGIES[launcher]
  topo = cls(**_fields(cls, raw.get(launcher, {}), f"{where}.{launcher}"))
  flags = raw.get("flags", {})
  if not isinstance(flags, dict):
    raise LaunchError(f"{where}.flags must be a JSON object.")
  for k in flags:
    if not _NAME.match(k):
      raise LaunchError(f"{where}.flags: bad flag name {k!r}.")
  env = raw.get("env", {})
  if not isinstance(env, dict) or not all(
      isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)
      and isinstance(v, str) for k, v in env.items()):
    raise LaunchError(f"{where}.env must map NAME to string values.")
  return RunConfig(launcher=launcher, binary=binary, topology=topo,
                   flags=tuple(flags.items()), env=tuple(env.items()),
                   workdir=raw.get("workdir"), repo_dir=raw.get("repo_dir"),
                   venv=raw.get("venv"))


def load_config(path: str) -> RunConfig:
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise LaunchError(f"--config={path}: {e}") from e
  return parse_config(raw, where=path)


def _flag_arg(name: str, value: Any, workdir: Optional[str]) -> str:
  if isinstance(value, bool):
    return f"--{name}" if value else f"--no{name}"
  if isinstance(value, (list, tuple)):
    value = ",".join(str(v) for v in value)
  if value is None:
    raise LaunchError(f"flags.{name} is null; leave it out instead.")
  value = str(value)
  if "{workdir}" in value:
    if workdir is None:
      raise LaunchError(f"flags.{name} uses {{workdir}} but the config has "
                        "no workdir.")
    value = value.replace("{workdir}", workdir.rstrip("/"))
  return f"--{name}={value}"


def python_command(cfg: RunConfig) -> list[str]:
  """``python -m experiments.BINARY --flag=value ...``."""
  return ["python", "-m", cfg.module] + [
      _flag_arg(k, v, cfg.workdir) for k, v in cfg.flags]


def _opt(args: list[str], name: str, value: Any) -> None:
  if value is not None:
    args.append(f"--{name}={value}")


def script_command(cfg: RunConfig, dry_run: bool) -> list[str]:
  """The launcher script's own command line (``bash SCRIPT ... -- cmd``)."""
  t = cfg.topology
  args = ["bash", SCRIPTS[cfg.launcher]] + (["--dry_run"] if dry_run else [])
  if cfg.launcher == "tpu_vm":
    for k in ("name", "zone", "project", "accelerator_type",
              "runtime_version"):
      _opt(args, k, getattr(t, k))
    args += [f"--{k}" for k in ("create", "copy", "setup", "delete")
             if getattr(t, k)]
  elif cfg.launcher == "xpk":
    for k in ("cluster", "workload", "docker_image", "tpu_type",
              "device_type", "num_slices", "num_nodes", "project", "zone"):
      _opt(args, k, getattr(t, k))
  else:
    args += [f"--nodes={t.nodes}", f"--gpus_per_node={t.gpus_per_node}"]
  if cfg.launcher != "xpk":
    _opt(args, "venv", cfg.venv)
  _opt(args, "repo_dir", cfg.repo_dir)
  args += [f"--env={k}={v}" for k, v in cfg.env]
  return args + ["--"] + python_command(cfg)


def sbatch_command(cfg: RunConfig) -> list[str]:
  """``sbatch OPTIONS launch/slurm.sbatch ... -- cmd`` (slurm only)."""
  t = cfg.topology
  args = ["sbatch", f"--job-name={t.job_name}", f"--nodes={t.nodes}",
          f"--ntasks-per-node={t.gpus_per_node}",
          f"--gpus-per-node={t.gpus_per_node}"]
  _opt(args, "partition", t.partition)
  _opt(args, "time", t.time)
  _opt(args, "account", t.account)
  _opt(args, "output", t.output)
  script = script_command(cfg, dry_run=False)[1:]  # Drop "bash".
  # Node/GPU counts come from the allocation inside the job.
  return args + [a for a in script
                 if not a.startswith(("--nodes=", "--gpus_per_node="))]


def _run_script(argv: Sequence[str]) -> str:
  proc = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True,
                        timeout=60, check=False)
  if proc.returncode != 0:
    raise LaunchError(f"{' '.join(argv[:2])} failed: "
                      f"{proc.stderr.strip().splitlines()[0:1]}")
  return proc.stdout


def dry_run_text(cfg: RunConfig) -> str:
  """Exactly the commands a launch would run, one per line."""
  text = _run_script(script_command(cfg, dry_run=True))
  if cfg.launcher == "slurm":
    return (f"# submit (runs {SCRIPTS['slurm']} inside the allocation):\n"
            f"{shlex.join(sbatch_command(cfg))}\n"
            f"# inside the job, {SCRIPTS['slurm']} runs:\n{text}")
  return text


def extract_python_commands(text: str) -> list[tuple[str, list[str]]]:
  """``(module, args)`` of every ``python -m MODULE ARGS`` in shell lines.

  Looks inside ``--command=...`` arguments (remote shell lines) too.
  """
  found = []

  def scan(tokens: list[str]) -> None:
    for i, tok in enumerate(tokens):
      if tok.startswith("--command="):
        scan(shlex.split(tok[len("--command="):]))
      base = os.path.basename(tok)
      if (re.match(r"^python(3(\.\d+)?)?$", base) and i + 2 < len(tokens)
          and tokens[i + 1] == "-m"):
        args = []
        for a in tokens[i + 3:]:
          if a in _SEPARATORS:
            break
          args.append(a)
        found.append((tokens[i + 2], args))

  for line in text.splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
      scan(shlex.split(line))
  return found


def check_flags(commands: Sequence[tuple[str, list[str]]],
                root: str = ROOT) -> list[str]:
  """Errors (empty: all valid) of each command under its binary's flags.

  Only ``experiments.*`` modules are checked (one `launch.flagcheck`
  subprocess per distinct binary); a module there that is not a binary
  file is an error.
  """
  results: list[Optional[str]] = [None] * len(commands)
  by_module: dict[str, list[int]] = {}
  for i, (module, args) in enumerate(commands):
    if not module.startswith("experiments."):
      continue  # e.g. `python3 -m venv` in a setup step.
    name = module.split(".", 1)[1]
    if name not in binaries(root):
      results[i] = f"{module}: no such binary experiments/{name}.py"
    else:
      by_module.setdefault(module, []).append(i)
  for module, idx in by_module.items():
    proc = subprocess.run(
        [sys.executable, "-m", "launch.flagcheck", module],
        input=json.dumps([list(commands[i][1]) for i in idx]), cwd=root,
        capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode not in (0, 1):
      for i in idx:
        results[i] = f"{module}: {proc.stderr.strip()[-500:]}"
      continue
    for i, err in zip(idx, json.loads(proc.stdout)):
      if err is not None:
        results[i] = f"{module} {shlex.join(commands[i][1])}: {err}"
  return [e for e in results if e is not None]


def launch(cfg: RunConfig, *, dry_run: bool, check: bool = True) -> str:
  """Validates, then prints (dry run) or runs the launch; returns the text.

  Raises:
    LaunchError: a bad config, a failing script, or flags the binary
      rejects.
  """
  text = dry_run_text(cfg)
  commands = extract_python_commands(text)
  if not any(m == cfg.module for m, _ in commands):
    raise LaunchError(f"{SCRIPTS[cfg.launcher]} printed no "
                      f"'python -m {cfg.module}' command.")
  if check:
    errors = check_flags(commands)
    if errors:
      raise LaunchError("flags rejected by the binary: " + "; ".join(errors))
  if dry_run:
    return text
  argv = (sbatch_command(cfg) if cfg.launcher == "slurm"
          else script_command(cfg, dry_run=False))
  subprocess.run(argv, cwd=ROOT, check=True)
  return text


def main(argv: Optional[list[str]] = None) -> int:
  ap = argparse.ArgumentParser(
      prog="python -m launch.render",
      description="Render and run a cbench cluster launch.")
  ap.add_argument("--config", required=True, help="JSON run config.")
  ap.add_argument("--dry_run", action="store_true",
                  help="Print the exact commands; run nothing.")
  ap.add_argument("--nocheck_flags", action="store_true",
                  help="Skip checking flags against the binary.")
  args = ap.parse_args(argv)
  try:
    text = launch(load_config(args.config), dry_run=args.dry_run,
                  check=not args.nocheck_flags)
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except subprocess.CalledProcessError as e:
    print(f"error: {shlex.join(e.cmd)} exited with {e.returncode}",
          file=sys.stderr)
    return 1
  if args.dry_run:
    sys.stdout.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
