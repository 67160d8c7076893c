"""Table helpers with fastai's names: `cont_cat_split`, `add_datepart`, `range_of`.

>>> import pandas as pd
>>> df = pd.DataFrame({"age": [20, 30, 40], "city": ["a", "b", "a"], "price": [1.5, 2.0, 3.0], "y": [0, 1, 0]})
>>> cont_cat_split(df, max_card=20, dep_var="y")
(['price'], ['age', 'city'])
>>> df = add_datepart(pd.DataFrame({"saledate": pd.to_datetime(["2020-01-31", "2021-06-01"])}), "saledate")
>>> df[["saleYear", "saleMonth", "saleIs_month_end", "saleElapsed"]].values.tolist()
[[2020, 1, True, 1580428800.0], [2021, 6, False, 1622505600.0]]
>>> range_of([7, 8, 9])
[0, 1, 2]
"""
from __future__ import annotations

import re
from collections.abc import Sized

import numpy as np
import pandas as pd

__all__ = ["cont_cat_split", "add_datepart", "range_of"]

_DATE_ATTRS = ("Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end", "Is_month_start",
               "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start")


_PANDAS_NAME = {"Dayofweek": "day_of_week", "Dayofyear": "day_of_year"}


def range_of(x: Sized) -> list[int]:
    """``list(range(len(x)))``: every row position of ``x`` (for ``splits``).

    >>> df = pd.DataFrame({"a": [5, 6, 7, 8, 9]})
    >>> train, valid = range_of(df)[:4], range_of(df)[4:]      # e.g. TabularPandas(..., splits=(train, valid))
    >>> train, valid
    ([0, 1, 2, 3], [4])
    """
    return list(range(len(x)))


def cont_cat_split(df: pd.DataFrame, max_card: int = 20,
                   dep_var: str | list[str] | None = None) -> tuple[list[str], list[str]]:
    """``(cont_names, cat_names)``: float columns and integer columns with more than ``max_card`` distinct
    values are continuous; everything else (text, bools, dates, integers with few values) is categorical.
    ``dep_var`` (the target) is left out of both. Same rule as fastai's.

    >>> df = pd.DataFrame({"zip": range(30), "rooms": [1, 2, 3] * 10, "area": [50.5] * 30, "ok": [True, False] * 15,
    ...                    "price": [1.0] * 30})
    >>> cont_cat_split(df, max_card=20, dep_var="price")      # 30 distinct zips: continuous; 3 room counts: categorical
    (['zip', 'area'], ['rooms', 'ok'])
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"cont_cat_split takes a pandas DataFrame, got {type(df).__name__}")
    skip = {dep_var} if isinstance(dep_var, str) else set(dep_var or [])
    unknown = sorted(skip - set(df.columns))
    if unknown:
        raise KeyError(f"dep_var {unknown} is not a column of the table; its columns are {list(df.columns)}")
    cont, cat = [], []
    for name in df.columns:
        if name in skip:
            continue
        dtype = df[name].dtype
        if pd.api.types.is_bool_dtype(dtype):
            cat.append(name)
        elif pd.api.types.is_float_dtype(dtype) or (pd.api.types.is_integer_dtype(dtype)
                                                    and df[name].nunique() > max_card):
            cont.append(name)
        else:
            cat.append(name)
    return cont, cat


def add_datepart(df: pd.DataFrame, field_name: str, prefix: str | None = None, drop: bool = True,
                 time: bool = False) -> pd.DataFrame:
    """Replace the date column ``field_name`` by its parts: ``<prefix>Year``, ``Month``, ``Week``, ``Day``,
    ``Dayofweek``, ``Dayofyear``, the ``Is_month_end``/``..._start`` flags (month, quarter, year),
    ``Hour``/``Minute``/``Second`` when ``time``, and ``Elapsed`` (seconds since 1970; NaN for a missing date).

    ``prefix`` defaults to the column name without a trailing ``date``/``Date`` (``saledate`` → ``sale``).
    As fastai's, it **modifies ``df`` in place** and returns it (``df = add_datepart(df, 'saledate')`` works
    either way). Text dates are parsed with ``pd.to_datetime``; a value that is not a date raises.

    >>> df = add_datepart(pd.DataFrame({"saledate": ["2021-03-31", None]}), "saledate")
    >>> list(df.columns)[:4], df["saleIs_quarter_end"].tolist(), df["saleElapsed"].tolist()   # a missing date: NaN
    (['saleYear', 'saleMonth', 'saleWeek', 'saleDay'], [True, False], [1617148800.0, nan])
    """
    if field_name not in df.columns:
        raise KeyError(f"add_datepart: no column {field_name!r}; the table's columns are {list(df.columns)}")
    field = df[field_name]
    if not pd.api.types.is_datetime64_any_dtype(field.dtype):
        try:
            field = pd.to_datetime(field)
        except (ValueError, TypeError) as e:
            raise ValueError(f"add_datepart: column {field_name!r} is not a date column ({e})") from e
    if getattr(field.dt, "tz", None) is not None:
        field = field.dt.tz_convert(None)
    prefix = re.sub("[Dd]ate$", "", field_name) if prefix is None else prefix
    attrs = _DATE_ATTRS + (("Hour", "Minute", "Second") if time else ())
    for a in attrs:
        if a == "Week":
            df[prefix + a] = field.dt.isocalendar().week.astype(field.dt.day.dtype)
        else:
            df[prefix + a] = getattr(field.dt, _PANDAS_NAME.get(a, a.lower()))
    ns = field.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    df[prefix + "Elapsed"] = np.where(field.isna().to_numpy(), np.nan, ns / 1e9)
    if drop:
        del df[field_name]
    return df
