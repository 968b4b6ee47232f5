"""Track name -> `base.Track` (the plug-ins that write the release layout).

`TRACKS` maps a track name to its `base.Track`: ``geminon`` (procedurally
generated creatures) and ``news`` (real articles from local crawl files).
`get(name)` returns one (CbenchError naming an unknown track).
"""

from __future__ import annotations

from cbench import _validate
from cbench.tracks import base
from cbench.tracks.geminon import track as geminon_track
from cbench.tracks.news import track as news_track

TRACKS: dict[str, base.Track] = {
    geminon_track.TRACK.name: geminon_track.TRACK,
    news_track.TRACK.name: news_track.TRACK,
}
NAMES = tuple(TRACKS)


def get(name: str) -> base.Track:
  _validate.one_of("--track", name, NAMES)
  return TRACKS[name]
