"""Cleaning, truncation, the word tokenizer and its vocabulary."""
from __future__ import annotations

import pytest

from learnkit.text import Vocab, WordTokenizer, clean_text, tokenizer_from_config, truncate


def test_clean_text_turns_html_breaks_into_newlines_and_collapses_whitespace():
    assert clean_text("Great!<br /><br />Really   great.\t<BR>End ") == "Great!\nReally great.\nEnd"
    assert clean_text("  \n <br/> ") == ""


@pytest.mark.parametrize("how,expected", [("head", [0, 1, 2, 3]), ("tail", [6, 7, 8, 9]), ("head_tail", [0, 7, 8, 9])])
def test_truncate_keeps_the_requested_part(how, expected):
    assert truncate(list(range(10)), 4, how) == expected
    assert truncate([1, 2], 4, how) == [1, 2]


def test_truncate_head_tail_keeps_a_quarter_head():
    out = truncate(list(range(1000)), 254, "head_tail")
    assert len(out) == 254 and out[:63] == list(range(63)) and out[63:] == list(range(809, 1000))
    with pytest.raises(ValueError, match="truncation"):
        truncate(list(range(10)), 4, "middle")


def test_vocab_min_freq_max_vocab_and_specials():
    toks = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    v = Vocab.build(toks, min_freq=2)
    assert v.itos == ["xxpad", "xxunk", "a", "b"]  # most frequent first, then alphabetical
    assert v.numericalize(["a", "zzz", "b"]) == [2, 1, 3]
    assert Vocab.build(toks, min_freq=1, max_vocab=3).itos == ["xxpad", "xxunk", "a"]
    assert Vocab.build(toks, min_freq=1).itos == ["xxpad", "xxunk", "a", "b", "c", "d"]  # ties alphabetical
    assert v.textify([2, 0, 1]) == ["a", "xxunk"]


def test_vocab_ignores_special_tokens_in_the_texts_and_validates():
    v = Vocab.build([["xxunk", "xxpad", "a"]] * 3, min_freq=1)
    assert v.itos == ["xxpad", "xxunk", "a"]
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build([["a"]], min_freq=0)
    with pytest.raises(ValueError, match="max_vocab"):
        Vocab.build([["a"]], max_vocab=2)
    with pytest.raises(ValueError, match="special tokens"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="more than once"):
        Vocab(["xxpad", "xxunk", "a", "a"])


def test_word_tokenizer_splits_words_contractions_numbers_and_punctuation():
    assert WordTokenizer.split("I didn't LIKE it: 3/10...") == ["i", "didn't", "like", "it", ":", "3", "/", "10",
                                                                 ".", ".", "."]
    assert WordTokenizer.split("Amélie était génial") == ["amélie", "était", "génial"]


def test_word_tokenizer_unknown_words_truncation_and_round_trip():
    tok = WordTokenizer.train(["good film", "good story", "bad film"], min_freq=2, max_len=3, truncation="head")
    assert tok.vocab.itos == ["xxpad", "xxunk", "film", "good"]
    ids = tok.encode_batch(["Good unseen film film film"])[0]
    assert ids == [3, 1, 2]  # unknown word -> xxunk, truncated to max_len
    assert tok.decode(ids) == "good xxunk film"
    again = tokenizer_from_config(tok.export_config())
    assert again.encode_batch(["good film"]) == tok.encode_batch(["good film"])
    assert again.max_len == 3 and again.truncation == "head"


def test_word_tokenizer_gives_an_empty_text_one_unknown_token():
    tok = WordTokenizer.train(["good film"], min_freq=1)
    assert tok.encode_batch([""]) == [[tok.vocab.unk_id]]


def test_tokenizer_from_config_rejects_unknown_types():
    with pytest.raises(ValueError, match="unknown tokenizer 'sentencepiece'.*@register_tokenizer"):
        tokenizer_from_config({"type": "sentencepiece"})
