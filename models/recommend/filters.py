"""Business rules as an allowed-item mask: availability, category / brand, price range."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd


def item_mask(
    catalog: pd.DataFrame,
    item_ids: np.ndarray,
    *,
    categories: Collection[str] | None = None,
    brands: Collection[str] | None = None,
    price_range: tuple[float, float] | None = None,
    available: str | None = None,
) -> np.ndarray:
    """Boolean mask over ``item_ids`` (a model's ``item_ids_``) of the items the rules allow.

    Parameters
    ----------
    catalog : pandas.DataFrame
        Index ``item_id``; columns ``category``, ``brand``, ``price`` as
        :func:`features.interactions.read_catalog` returns, plus any availability column.
    item_ids : numpy.ndarray
        The model's items, in its order. An item missing from the catalog passes no rule.
    categories, brands : collection of str, optional
        Keep only these.
    price_range : (float, float), optional
        Keep prices in ``[low, high]``; an unknown price fails.
    available : str, optional
        A boolean catalog column (e.g. ``in_stock``): keep the items where it is true.
    """
    rows = catalog.reindex(pd.Index(item_ids, dtype=object))
    keep = rows.index.isin(catalog.index)
    if categories is not None:
        keep &= rows["category"].isin(list(categories)).to_numpy()
    if brands is not None:
        keep &= rows["brand"].isin(list(brands)).to_numpy()
    if price_range is not None:
        low, high = price_range
        keep &= rows["price"].between(low, high).to_numpy()
    if available is not None:
        keep &= rows[available].fillna(False).astype(bool).to_numpy()
    return keep
