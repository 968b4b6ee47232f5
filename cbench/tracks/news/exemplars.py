"""Few-shot exemplars shipped with every News release (``qa/exemplars.jsonl``).

Three questions in the release's own format (a cloze of a report, anchored
to its date; one per answer kind) about well-known events long before any
release month, written for cbench (no article text). The harness prompts
with them instead of a base model's stored exemplars, so a pretrained model
learns the answer format, not any fact of the release.
"""

EXEMPLARS = (
    {"id": "exemplar-1", "feature": "name", "answer": "Buzz Aldrin", "aliases": [],
     "question": ('On 21 July 1969, a news report titled "Men walk on the '
                  'Moon" said: "Neil Armstrong and ___ spent about two and a '
                  'half hours outside the lunar module." What name fills the '
                  'blank?')},
    {"id": "exemplar-2", "feature": "number", "answer": "108", "aliases": [],
     "question": ('On 12 April 1961, a news report titled "Soviet pilot '
                  'orbits the Earth" said: "The flight of Yuri Gagarin around '
                  'the planet lasted ___ minutes from launch to landing." '
                  'What number fills the blank?')},
    {"id": "exemplar-3", "feature": "date", "answer": "29 May", "aliases": [],
     "question": ('On 2 June 1953, a news report titled "Everest climbed" '
                  'said: "Edmund Hillary and Tenzing Norgay reached the '
                  'summit of the mountain on ___ after a final push from '
                  'their high camp." What date fills the blank?')},
)
