"""Recommenders on implicit feedback: one contract (:class:`Recommender`), several models, a blend,
and the offline evaluation that picks among them.

::

    from features.interactions import read_interactions
    from models.recommend import Interactions, EASERecommender, Filters

    rows = read_interactions(engine, as_of=cutoff)
    data = Interactions.from_frame(rows, as_of=cutoff, half_life_days=60)
    model = EASERecommender(l2=200).fit(data)
    model.recommend(profile_id, n=10, filters=Filters(exclude_seen=True))
"""

from models.recommend.base import Filters, Recommender
from models.recommend.blend import BlendRecommender
from models.recommend.data import Interactions
from models.recommend.ease import EASERecommender
from models.recommend.factorization import ALSRecommender, BPRRecommender
from models.recommend.filters import item_mask
from models.recommend.neighbours import ItemKNNRecommender
from models.recommend.popularity import PopularityRecommender
from models.recommend.rerank import RerankRecommender
from models.recommend.session import SessionRecommender

__all__ = [
    "ALSRecommender", "BPRRecommender", "BlendRecommender", "EASERecommender", "Filters", "Interactions",
    "ItemKNNRecommender", "PopularityRecommender", "Recommender", "RerankRecommender", "SessionRecommender",
    "item_mask",
]
