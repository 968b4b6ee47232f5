"""Benchmark tracks: plug-ins that write the one release layout.

  base      the `Track` contract and what a track declares for the harness.
  registry  name -> track (`registry.get("news")`).
  geminon/  procedurally generated creatures.
  news/     real articles from local crawl files.
"""
