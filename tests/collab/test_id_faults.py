"""Issue 19 item 8: ids mixing 196 and '196' are refused naming the column; duplicate (user, item) rows are
reported and kept once, so none leaks between train and valid."""
from __future__ import annotations

import pandas as pd
import pytest

from learnkit.collab import CollabDataLoaders


def _ratings(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame({"user": [i % 10 for i in range(n)], "item": [i // 10 + 100 for i in range(n)],
                         "rating": [float(i % 5 + 1) for i in range(n)]})


def test_mixed_int_and_str_ids_name_column_and_example():
    df = _ratings().astype({"user": object})
    df.loc[3, "user"] = "3"
    with pytest.raises(ValueError, match=r"column 'user' mixes number and string ids, e\.g\. 3 \(row 13\) and '3' "
                                         r"\(row 3\).*astype\(str\)"):
        CollabDataLoaders.from_df(df, device="cpu")


def test_duplicate_pairs_warn_with_count_and_keep_the_last():
    df = _ratings()
    dup = df.iloc[[0, 1, 2]].assign(rating=5.0)
    df = pd.concat([df, dup], ignore_index=True)
    with pytest.warns(UserWarning, match=r"3 duplicate \('user', 'item'\) row\(s\), e.g. user=0, item=100; keeping the last"):
        dls = CollabDataLoaders.from_df(df, device="cpu", bs=8)
    pairs = [tuple(x.tolist()) for dl in (dls.train, dls.valid) for x, _ in dl for x in x]
    assert len(pairs) == len(set(pairs)) == 60  # each pair once, on one side of the split
    ys = {tuple(x.tolist()): float(y) for dl in (dls.train, dls.valid) for xb, yb in dl for x, y in zip(xb, yb)}
    u0, i0 = dls.users.encode([0])[0].item(), dls.items.encode([100])[0].item()
    assert ys[(u0, i0)] == 5.0  # the last rating of the pair
