"""Business rules as an allowed-item mask (availability, category / brand, price range) and
diversity (at most so many items per category).

:class:`ItemRules` says what a request allows; :class:`AlignedCatalog` holds the catalog as
arrays in a model's item order, so a request's mask is a few numpy comparisons, not a pandas join.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ItemRules:
    """Which items a request allows; ``None`` / empty means no rule.

    Parameters
    ----------
    categories, brands : collection of str, optional
        Keep only these.
    exclude_categories, exclude_brands : collection of str
        Never these.
    price_range : (float, float), optional
        Keep prices in ``[low, high]``; an unknown price fails.
    available : str, optional
        A boolean catalog column (e.g. ``available``): keep the items where it is true.
    """

    categories: Collection[str] | None = None
    brands: Collection[str] | None = None
    exclude_categories: Collection[str] = ()
    exclude_brands: Collection[str] = ()
    price_range: tuple[float, float] | None = None
    available: str | None = None

    @property
    def restricts(self) -> bool:
        return (self.categories is not None or self.brands is not None or bool(self.exclude_categories)
                or bool(self.exclude_brands) or self.price_range is not None or self.available is not None)


@dataclass(frozen=True)
class AlignedCatalog:
    """A catalog's columns as arrays over a model's items (``item_ids_`` order).

    Attributes
    ----------
    known : numpy.ndarray
        Bool: the item is in the catalog (an item outside it passes no rule).
    category, brand : numpy.ndarray
        Object arrays (None when unknown).
    price : numpy.ndarray
        float64, NaN when unknown.
    flags : dict of str to numpy.ndarray
        Every boolean catalog column (availability).
    """

    known: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    flags: dict[str, np.ndarray]

    @classmethod
    def from_frame(cls, catalog: pd.DataFrame, item_ids: np.ndarray) -> AlignedCatalog:
        """``catalog``: index ``item_id``; ``category``, ``brand``, ``price`` and any boolean columns."""
        rows = catalog.reindex(pd.Index(item_ids, dtype=object))
        flags = {name: rows[name].astype("boolean").fillna(False).to_numpy(dtype=bool)
                 for name in catalog.columns if catalog[name].dtype == bool}
        return cls(
            known=rows.index.isin(catalog.index),
            category=rows["category"].astype(object).where(rows["category"].notna(), None).to_numpy(),
            brand=rows["brand"].astype(object).where(rows["brand"].notna(), None).to_numpy(),
            price=rows["price"].to_numpy(dtype="float64"),
            flags=flags,
        )

    def mask(self, rules: ItemRules) -> np.ndarray:
        """Bool over the items: those ``rules`` allow."""
        keep = self.known.copy()
        if rules.categories is not None:
            keep &= np.isin(self.category, list(rules.categories))
        if rules.brands is not None:
            keep &= np.isin(self.brand, list(rules.brands))
        if rules.exclude_categories:
            keep &= ~np.isin(self.category, list(rules.exclude_categories))
        if rules.exclude_brands:
            keep &= ~np.isin(self.brand, list(rules.exclude_brands))
        if rules.price_range is not None:
            low, high = rules.price_range
            keep &= (self.price >= low) & (self.price <= high)  # NaN compares false: unknown fails
        if rules.available is not None:
            if rules.available not in self.flags:
                raise ValueError(f"the catalog has no boolean column {rules.available!r}")
            keep &= self.flags[rules.available]
        return keep


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
    categories, brands, price_range, available
        See :class:`ItemRules`.
    """
    rules = ItemRules(categories=categories, brands=brands, price_range=price_range, available=available)
    return AlignedCatalog.from_frame(catalog, item_ids).mask(rules)


def diversify(top: np.ndarray, categories: np.ndarray, *, n: int, max_per_category: int) -> np.ndarray:
    """The first ``n`` indices into ``top`` (a ranked list of item positions, -1 for none) taking at
    most ``max_per_category`` items of each category; items of unknown category are each their own."""
    picked: list[int] = []
    taken: dict[object, int] = {}
    for index, item in enumerate(top):
        if item < 0 or len(picked) == n:
            break
        category = categories[item]
        if category is not None:
            if taken.get(category, 0) >= max_per_category:
                continue
            taken[category] = taken.get(category, 0) + 1
        picked.append(index)
    return np.array(picked, dtype=np.int64)
