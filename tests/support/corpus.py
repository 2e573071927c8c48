"""Text the embedding tests ship: sentences on distinct topics with a query for each,
and a deterministic generator of a few thousand distinct sentences."""

from __future__ import annotations

import itertools

import numpy as np

# topic -> (sentence stored in the index, query about that topic in other words)
TOPICS: dict[str, tuple[str, str]] = {
    "baking": ("The recipe calls for flour, butter and two eggs to bake a soft sponge cake.",
               "How do I make a dessert in the oven?"),
    "football": ("The goalkeeper saved a penalty in the final minute of the football match.",
                 "soccer game result"),
    "astronomy": ("Astronomers observed a distant galaxy through the new space telescope.",
                  "planets and stars in outer space"),
    "medicine": ("The surgeon operated on the patient after the nurse measured his blood "
                 "pressure.", "hospital doctors treating someone who is ill"),
    "finance": ("Stock markets fell sharply after the central bank raised interest rates.",
                "investors worried about the economy"),
    "music": ("The violinist performed a sonata with the symphony orchestra last night.",
              "a classical music concert"),
    "weather": ("Heavy rain and strong winds are forecast for the coast this weekend.",
                "will there be a storm tomorrow?"),
    "software": ("The programmer fixed a memory leak in the database server code.",
                 "debugging a computer program"),
    "farming": ("Farmers harvested wheat and corn in the fields before the autumn frost.",
                "growing crops in agriculture"),
    "pets": ("The kitten chased a ball of yarn across the living room floor.",
             "a cat playing at home"),
}

_SUBJECTS = [
    "The old fisherman", "A young pilot", "My neighbour", "The chef", "A tired nurse",
    "The teacher", "A famous painter", "The mayor", "A curious child", "The librarian",
    "An engineer", "The baker", "A retired soldier", "The gardener", "A street musician",
    "The journalist", "A student", "The farmer", "A taxi driver", "The scientist",
]
_VERBS = [
    "repairs", "paints", "sells", "studies", "photographs", "describes", "cleans",
    "builds", "borrows", "carries", "forgets", "measures", "admires", "hides", "finds",
]
_OBJECTS = [
    "a wooden boat", "the red bicycle", "an antique clock", "the garden fence",
    "a mountain map", "the broken radio", "a basket of apples", "the church bell",
    "a leather suitcase", "the kitchen window", "a pair of boots", "the stone bridge",
    "a violin", "the school bus", "a bag of coffee", "the lighthouse lamp",
    "a chess board", "the office printer", "a silver ring", "the vegetable cart",
]
_PLACES = [
    "near the harbour", "in the morning", "after the storm", "at the market",
    "behind the station", "before dinner", "in the village square", "on a rainy day",
    "by the river", "during the festival",
]


def generated_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences (n <= 60,000): subject, verb, object and place, drawn
    without replacement by a seeded shuffle, so every run gets the same list."""
    combos = list(itertools.product(_SUBJECTS, _VERBS, _OBJECTS, _PLACES))
    order = np.random.default_rng(seed).permutation(len(combos))[:n]
    return [" ".join(combos[i]) + "." for i in order]
