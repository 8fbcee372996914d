from zlt.run.lines import LineSplitter, split_text, strip_ansi


def feed_all(chunks, **kw):
    sp = LineSplitter(**kw)
    out = []
    for c in chunks:
        out.extend(sp.feed(c))
    return out + sp.flush()


def test_cr_redraws_and_newlines_are_both_line_ends():
    data = b"Loading VAE\nzs:  10%|#         | 1/10 [00:01<00:09]\rzs:  20%|##        | 2/10 [00:02<00:08]\r\nModel Loaded\n"
    assert feed_all([data]) == [
        "Loading VAE",
        "zs:  10%|#         | 1/10 [00:01<00:09]",
        "zs:  20%|##        | 2/10 [00:02<00:08]",
        "Model Loaded",
    ]


def test_partial_lines_wait_for_their_end():
    sp = LineSplitter()
    assert sp.feed(b"Saving at st") == []
    assert sp.feed(b"ep 250\nSaved ") == ["Saving at step 250"]
    assert sp.flush() == ["Saved "]  # verbatim: only terminators are removed


def test_crlf_split_across_chunks_gives_no_empty_line():
    assert feed_all([b"one\r", b"\ntwo\r\n"]) == ["one", "two"]


def test_utf8_character_split_across_chunks():
    text = "steps:  50%|█████     | 100/200 [00:23<00:23, 4.23it/s]\n".encode()
    i = text.index("█".encode()) + 1  # cut inside the 3-byte block character
    assert feed_all([text[:i], text[i:]]) == [text.decode().strip()]


def test_invalid_bytes_are_replaced_not_fatal():
    assert feed_all([b"bad \xff byte\n"]) == ["bad \ufffd byte"]


def test_output_without_trailing_newline_is_flushed_at_eof():
    assert feed_all([b"last words"]) == ["last words"]


def test_endless_line_is_cut_to_bound_memory():
    out = feed_all([b"x" * 50, b"y" * 50], max_line=60)
    assert "".join(out) == "x" * 50 + "y" * 50
    assert all(len(line) <= 100 for line in out) and len(out) >= 1


def test_ansi_codes_are_stripped():
    assert strip_ansi("\x1b[32mINFO\x1b[0m ok\x1b[A") == "INFO ok"
    assert split_text("a\r\x1b[2Kb\n") == ["a", "b"]
