"""Shapes crossing the features boundary: what a store's events call a purchase."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Purchases:
    """Which events are purchases and where their value is; Segment's e-commerce spec by default.

    Parameters
    ----------
    events : tuple of str
        Track event names that are a purchase (``Order Completed``).
    revenue : str
        Property holding an order's value.  An order without it (or where it is not a JSON number)
        is worth the sum of ``products[].price`` x ``products[].quantity`` (quantity 1 when absent),
        as the spec's products array describes the same order.
    categories : tuple of str, optional
        Product categories that get a ``category_share__*`` column; ``None`` means every category
        bought as of the cutoff (so the columns depend on the data).
    """

    events: tuple[str, ...] = ("Order Completed",)
    revenue: str = "revenue"
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.events or not all(isinstance(name, str) and name for name in self.events):
            raise ValueError("Purchases.events needs at least one event name")
        if not self.revenue:
            raise ValueError("Purchases.revenue needs a property name")


@dataclass(frozen=True)
class Partition:
    """One of ``count`` disjoint slices of the profiles: those whose ``profile_id % count == index``.

    Profile ids are sequential integers, so their remainders spread any stretch of profiles evenly
    over the slices without a lookup table, and the predicate runs in the store: each slice's
    queries read only its own profiles' rows. ``Partition()`` is every profile.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a partition is 0 <= index < count, got {self.index} of {self.count}")

    @classmethod
    def split(cls, count: int) -> list[Partition]:
        """The ``count`` partitions that together hold every profile once."""
        return [cls(index, count) for index in range(count)]
