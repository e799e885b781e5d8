"""Corpus building/reading and the P_α sampler, on a small real corpus of local text."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from acodm_gym.config import load_config
from acodm_gym.data import tokenizer as toklib
from acodm_gym.data.corpus import CorpusError, build_corpus, open_corpus
from acodm_gym.data.readers import MAX_PIECE_CHARS
from acodm_gym.data.sampler import DomainSampler
from acodm_gym.data.token_corpus import TokenCorpus

from conftest import small_config

DOMAINS = ["code", "docs", "fonts", "legal"]


def _data_cfg(text_dir: Path, cache: Path, **data):
    return load_config(small_config(text_dir, cache, data=data)).data


def _source_docs(text_dir: Path, domain: str) -> set[str]:
    return {p.read_text() for p in (text_dir / domain).iterdir() if p.read_text().strip()}


def _quiet(_msg):
    pass


# ---------------------------------------------------------------------------------------------
# Corpus


def test_manifest_describes_every_domain_and_split(corpus):
    m = corpus.manifest
    assert corpus.domains == DOMAINS == [d["name"] for d in m["domains"]]
    assert m["vocab_size"] == corpus.vocab_size == 512
    assert m["dtype"] == "uint16" and corpus.dtype == np.uint16
    assert corpus.tokenizer().token_to_id(toklib.EOS_TOKEN) == m["eos_id"] == corpus.eos_id
    for d in m["domains"]:
        assert d["bytes"] > 100_000 and d["documents"] >= 1
        assert d["source"].startswith("dir:") and d["source"].endswith(d["name"])
        for split in ("train", "validation", "test"):
            arr = corpus.tokens(d["name"], split)
            assert len(arr) == d["tokens"][split] > 0
            assert (corpus.root / d["name"] / f"{split}.bin").stat().st_size == 2 * d["tokens"][split]
        # validation and test are ~2 % each of the stream, train the rest
        total = sum(d["tokens"].values())
        assert d["tokens"]["validation"] == pytest.approx(0.02 * total, abs=1)
        assert d["tokens"]["train"] > 0.95 * total
    w = corpus.natural_weights()
    assert w.sum() == pytest.approx(1.0)
    assert np.allclose(
        w, [d["tokens"]["train"] for d in m["domains"]] / np.sum([d["tokens"]["train"] for d in m["domains"]])
    )


def test_token_files_are_memmaps_that_decode_to_the_source_documents(corpus, corpus_text_dir):
    tok = corpus.tokenizer()
    for domain in ("code", "legal"):
        train = corpus.tokens(domain, "train")
        assert isinstance(train, np.memmap) and train.dtype == np.uint16
        assert int(train.max()) < corpus.vocab_size
        sources = _source_docs(corpus_text_dir, domain)
        ids = np.asarray(train).tolist()
        cuts = [i for i, t in enumerate(ids) if t == corpus.eos_id]
        assert cuts, "documents are separated by end-of-text"
        # every complete document of the train split decodes to exactly one source file
        start = 0
        for cut in cuts:
            assert tok.decode(ids[start:cut]) in sources
            start = cut + 1
        # and a block drawn for training is a piece of the source text
        blocks = corpus.blocks(domain, "train", 32)
        inside = [b for b in blocks[:50] if corpus.eos_id not in b]  # blocks within one document
        assert len(inside) > 40
        for block in inside[::10]:
            assert any(tok.decode(block.tolist()) in s for s in sources)


def test_blocks_are_consecutive_slices(corpus):
    blocks = corpus.blocks("docs", "validation", 16, limit=3)
    assert blocks.shape == (3, 16) and blocks.dtype == np.int64
    assert np.array_equal(blocks.ravel(), corpus.tokens("docs", "validation")[:48])


def test_build_is_cached(config, corpus):
    logs: list[str] = []
    manifest = corpus.root / "manifest.json"
    before = manifest.stat().st_mtime_ns
    again = build_corpus(load_config(config).data, log=logs.append)
    assert again == corpus.root
    assert manifest.stat().st_mtime_ns == before
    assert logs == []  # nothing trained or tokenized
    assert not list(corpus.root.parent.glob("*.tmp-*"))


@pytest.fixture()
def corpus_copy(corpus, tmp_path) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(corpus.root, dst)
    return dst


def test_truncated_token_file_is_reported(corpus_copy):
    path = corpus_copy / "fonts" / "train.bin"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError) as err:
        TokenCorpus(corpus_copy)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg and "delete" in msg and "rebuild" in msg


def test_missing_token_file_is_reported(corpus_copy):
    path = corpus_copy / "legal" / "validation.bin"
    path.unlink()
    with pytest.raises(CorpusError) as err:
        TokenCorpus(corpus_copy)
    assert str(path) in str(err.value) and "missing" in str(err.value) and "rebuild" in str(err.value)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        json.dumps({"format": 1, "domains": [{"name": "code"}]}).encode(),
        Path("/bin/ls").read_bytes()[:4096],
    ],
)
def test_corrupt_manifest_is_reported(corpus_copy, content):
    path = corpus_copy / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(CorpusError) as err:
        TokenCorpus(corpus_copy)
    assert str(path) in str(err.value) and "corrupt" in str(err.value) and "rebuild" in str(err.value)


def test_token_ids_beyond_the_vocabulary_are_reported(corpus_copy):
    manifest = json.loads((corpus_copy / "manifest.json").read_text())
    manifest["vocab_size"] = 100
    (corpus_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorpusError, match="vocabulary size 100"):
        TokenCorpus(corpus_copy)


def _tiny_text_corpus(root: Path, corpus_text_dir: Path, domains=("code", "legal")) -> Path:
    for d in domains:
        (root / d).mkdir(parents=True)
        (root / d / "a.txt").write_text(next(iter(sorted(_source_docs(corpus_text_dir, d))))[:20_000])
    return root


def test_domain_without_text_is_named(tmp_path, corpus_text_dir):
    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
    (text / "empty").mkdir()
    (text / "empty" / "blank.txt").write_text("  \n\n")
    with pytest.raises(CorpusError, match="Domain 'empty' has no text"):
        build_corpus(_data_cfg(text, tmp_path / "cache", vocab_size=300), log=_quiet)
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def test_tiny_domain_opens_and_the_sampler_names_it(tmp_path, corpus_text_dir):
    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
    (text / "tiny").mkdir()
    (text / "tiny" / "one.txt").write_text("h")  # two tokens with end-of-text: nothing left to train on
    built = open_corpus(_data_cfg(text, tmp_path / "cache", vocab_size=300), log=_quiet)
    assert built.domains == ["code", "legal", "tiny"] and len(built.tokens("tiny", "train")) == 0
    with pytest.raises(CorpusError, match=r"\['tiny'\] hold fewer than seq_len=32 training tokens"):
        DomainSampler(built, 32, 16)


def test_unknown_domain_in_data_domains_is_an_error(tmp_path, corpus_text_dir):
    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
    with pytest.raises(CorpusError, match=r"data.domains names \['lgal'\].*code, legal"):
        build_corpus(_data_cfg(text, tmp_path / "cache", domains=["code", "lgal"]), log=_quiet)


def test_missing_corpus_path_explains_the_options(tmp_path):
    with pytest.raises(CorpusError, match="does not exist.*jsonl"):
        build_corpus(_data_cfg(tmp_path / "nowhere", tmp_path / "cache"), log=_quiet)


def _write_jsonl(path: Path, text_dir: Path, field: str = "pile_set_name") -> None:
    lines = []
    for domain in DOMAINS:
        for doc in (p.read_text() for p in sorted((text_dir / domain).iterdir())):
            lines.append(json.dumps({"text": doc, "meta": {field: domain}}))
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("name", ["pile.jsonl", "pile.jsonl.zst"])
def test_jsonl_input_builds_the_same_domains(tmp_path, corpus, corpus_text_dir, name):
    path = tmp_path / name
    _write_jsonl(path, corpus_text_dir)
    tok = str(corpus.root / "tokenizer.json")  # reuse the trained tokenizer: no BPE training here
    built = open_corpus(_data_cfg(path, tmp_path / "cache", tokenizer=tok), log=_quiet)
    assert built.domains == corpus.domains
    by_name = {d["name"]: d for d in corpus.manifest["domains"]}
    for d in built.manifest["domains"]:
        assert d["source"] == f"jsonl:{path}"
        assert d["bytes"] == by_name[d["name"]]["bytes"] and d["documents"] == by_name[d["name"]]["documents"]
        assert sum(d["tokens"].values()) == sum(by_name[d["name"]]["tokens"].values())


def test_jsonl_without_the_domain_field_says_which_setting_to_change(tmp_path, corpus_text_dir):
    path = tmp_path / "x.jsonl"
    _write_jsonl(path, corpus_text_dir, field="set")
    with pytest.raises(CorpusError) as err:
        build_corpus(_data_cfg(path, tmp_path / "cache"), log=_quiet)
    assert f"{path}:1" in str(err.value) and "data.domain_fields" in str(err.value)
    cfg = _data_cfg(path, tmp_path / "cache", domain_fields=["meta.set"], vocab_size=300)
    assert TokenCorpus(build_corpus(cfg, log=_quiet)).domains == DOMAINS


def test_jsonl_bad_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "domain": "x"}\n{oops\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:2 is not valid JSON"):
        build_corpus(_data_cfg(path, tmp_path / "cache"), log=_quiet)


def test_jsonl_domain_name_that_cannot_be_a_directory(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(
        json.dumps({"text": "x " * 100, "domain": "a/b"})
        + "\n"
        + json.dumps({"text": "y " * 100, "domain": "c"})
        + "\n"
    )
    with pytest.raises(CorpusError, match="Domain name 'a/b' cannot name a directory"):
        build_corpus(_data_cfg(path, tmp_path / "cache", vocab_size=300), log=_quiet)


def test_user_tokenizer_is_used(tmp_path, corpus_text_dir):
    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
    docs = [p.read_text() for p in text.rglob("*.txt")]
    tok = toklib.train_bpe(docs, 300)
    tok_path = tmp_path / "my-tokenizer.json"
    tok.save(str(tok_path))
    logs: list[str] = []
    built = open_corpus(_data_cfg(text, tmp_path / "cache", tokenizer=str(tok_path), vocab_size=4096), log=logs.append)
    assert not any("training" in line for line in logs)
    assert built.vocab_size == tok.get_vocab_size() <= 300  # data.vocab_size is ignored
    assert built.tokenizer().to_str() == tok.to_str()
    legal = (text / "legal" / "a.txt").read_text()
    first = np.asarray(built.tokens("legal", "train")[:50]).tolist()
    # the stream is the user tokenizer's ids (documents are whole files here: one per domain)
    assert first == tok.encode(legal, add_special_tokens=False).ids[:50]

    # a changed tokenizer at the same path must not reuse the old token files
    toklib.train_bpe(docs, 280).save(str(tok_path))
    rebuilt = open_corpus(_data_cfg(text, tmp_path / "cache", tokenizer=str(tok_path), vocab_size=4096), log=_quiet)
    assert rebuilt.root != built.root and rebuilt.vocab_size == 280


def test_unusable_user_tokenizer_is_a_corpus_error(tmp_path, corpus_text_dir):
    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
    with pytest.raises(CorpusError, match="nope.json does not exist"):
        build_corpus(_data_cfg(text, tmp_path / "cache", tokenizer=str(tmp_path / "nope.json")), log=_quiet)
    from tokenizers import Tokenizer, models, pre_tokenizers

    no_eos = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    no_eos.pre_tokenizer = pre_tokenizers.Whitespace()
    no_eos.save(str(tmp_path / "no-eos.json"))
    with pytest.raises(CorpusError, match="no end-of-text token"):
        build_corpus(_data_cfg(text, tmp_path / "cache", tokenizer=str(tmp_path / "no-eos.json")), log=_quiet)
    assert not list((tmp_path / "cache").rglob("*.tmp-*")) and not list((tmp_path / "cache").rglob("manifest.json"))


# ---------------------------------------------------------------------------------------------
# Sampler


def _block_index(corpus, seq_len: int) -> dict[tuple[int, bytes], int]:
    index = {}
    for i, d in enumerate(corpus.domains):
        blocks = corpus.blocks(d, "train", seq_len)
        for b, row in enumerate(blocks):
            index.setdefault((i, row.tobytes()), b)
    return index


def test_batch_shape_counts_and_grouping(corpus):
    s = DomainSampler(corpus, seq_len=32, batch_size=16, exploration_share=0.1, seed=0)
    index = _block_index(corpus, 32)
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    for _ in range(20):
        b = s.sample(alpha)
        assert b.input_ids.shape == (16, 32) and b.input_ids.dtype.is_floating_point is False
        assert b.counts.sum() == 16 and (b.counts >= 1).all()  # floor: one per domain at 10 % of 16
        assert np.array_equal(np.bincount(b.domain_ids.numpy(), minlength=4), b.counts)
        assert (np.diff(b.domain_ids.numpy()) >= 0).all()  # rows grouped by domain
        for row, dom in zip(b.input_ids.numpy(), b.domain_ids.tolist()):
            assert (dom, row.tobytes()) in index  # every row is an aligned block of its own domain
    assert np.array_equal(s.samples_seen.sum(), 20 * 16)


def test_floor_and_probabilities(corpus):
    k = 4
    for share, batch, floor in [(0.1, 16, 1), (0.5, 16, 2), (0.25, 64, 4)]:
        s = DomainSampler(corpus, 32, batch, exploration_share=share, seed=1)
        assert s.floor == floor == max(1, int(share * batch / k))
        one_hot = np.array([0.0, 0.0, 1.0, 0.0])
        b = s.sample(one_hot)
        assert b.counts.tolist() == [floor, floor, batch - 3 * floor, floor]
        alpha = np.array([0.05, 0.15, 0.3, 0.5])
        p = s.probabilities(alpha)
        assert p.sum() == pytest.approx(1.0)
        assert np.allclose(p, floor / batch + (batch - k * floor) / batch * alpha)
        assert np.allclose(s.sample(alpha).probs, p)


def test_counts_follow_the_probabilities(corpus):
    s = DomainSampler(corpus, 32, 16, exploration_share=0.1, seed=3)
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    counts = np.sum([s.sample(alpha).counts for _ in range(1500)], axis=0)
    assert np.allclose(counts / counts.sum(), s.probabilities(alpha), atol=0.01)


def test_floor_off_allows_absent_domains(corpus):
    s = DomainSampler(corpus, 32, 16, exploration_floor=False, seed=0)
    assert s.floor == 0
    b = s.sample(np.array([0.0, 1.0, 0.0, 0.0]))
    assert b.counts.tolist() == [0, 16, 0, 0] and (b.domain_ids == 1).all()
    assert np.allclose(b.probs, [0, 1, 0, 0])


def test_batch_too_small_for_the_floor(corpus):
    with pytest.raises(CorpusError, match="batch_size=3.*4 domains"):
        DomainSampler(corpus, 32, 3)


def test_without_replacement_within_an_epoch_and_epochs_counted(corpus):
    seq = 128
    s = DomainSampler(corpus, seq, batch_size=64, exploration_floor=False, seed=0)
    d = 1  # "docs"
    n = int(s.n_blocks[d])
    index = _block_index(corpus, seq)
    alpha = np.eye(4)[d]
    seen: list[int] = []
    while len(seen) < 2 * n + 10:
        b = s.sample(alpha)
        seen += [index[d, row.tobytes()] for row in b.input_ids.numpy()]
    first, second = seen[:n], seen[n : 2 * n]
    assert sorted(first) == list(range(n))  # every block once before any repeat
    assert sorted(second) == list(range(n))
    assert first != second  # a fresh order each epoch
    assert s.epoch[d] == 2 and s.epoch[[0, 2, 3]].sum() == 0
    assert s.epochs()[d] == pytest.approx(2 + (len(seen) - 2 * n) / n)


def _draw(s, n=6, alpha=(0.4, 0.1, 0.2, 0.3)):
    return [s.sample(np.array(alpha)).input_ids.clone() for _ in range(n)]


def test_sampler_is_deterministic_under_its_seed(corpus):
    a = _draw(DomainSampler(corpus, 32, 16, seed=7))
    b = _draw(DomainSampler(corpus, 32, 16, seed=7))
    c = _draw(DomainSampler(corpus, 32, 16, seed=8))
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all((x == y).all() for x, y in zip(a, c))


def test_state_dict_round_trip_continues_the_same_sequence(corpus):
    s = DomainSampler(corpus, 128, 64, seed=5)
    _draw(s, 15)  # crosses an epoch boundary of the smallest domain under this α
    state = copy.deepcopy(json.loads(json.dumps(s.state_dict())))  # survives JSON (checkpoint files)
    expected = _draw(s, 15)
    restored = DomainSampler(corpus, 128, 64, seed=999)
    restored.load_state_dict(state)
    got = _draw(restored, 15)
    assert all((x == y).all() for x, y in zip(expected, got))
    assert np.array_equal(restored.samples_seen, s.samples_seen)
    assert np.array_equal(restored.epoch, s.epoch)


# ---------------------------------------------------------------------------------------------
# Corpora you can trust: splits and cap by hash, fingerprints, checksums, odd files


def _many_docs() -> dict[str, list[str]]:
    """Two domains of ~700 real documents each: the heads of stdlib modules, and pydoc's topics in slices."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p for p in sorted(stdlib.rglob("*.py")) if not {"test", "tests", "site-packages", "idlelib"} & set(p.parts)
    ]
    code = list(dict.fromkeys(t for t in (p.read_text(errors="replace")[:600] for p in files) if len(t.strip()) > 200))
    topics = (stdlib / "pydoc_data" / "topics.py").read_text()
    return {"code": code[:700], "docs": [topics[i : i + 600] for i in range(0, 420_000, 600)]}


def _jsonl(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "domain": d}) + "\n" for d, t in records))
    return path


def _documents(corpus: TokenCorpus, domain: str, split: str) -> list[str]:
    tok, ids = corpus.tokenizer(), np.asarray(corpus.tokens(domain, split)).tolist()
    docs, start = [], 0
    for i, t in enumerate(ids):
        if t == corpus.eos_id:
            docs.append(tok.decode(ids[start:i]))
            start = i + 1
    return docs


def test_jsonl_splits_by_document_hash_whatever_the_file_order(tmp_path, corpus):
    many = _many_docs()
    records = [(d, t) for d in many for t in many[d]]  # sorted by domain, then by source: the worst order
    tok = str(corpus.root / "tokenizer.json")
    built = {}
    for name, order in [("sorted", records), ("reversed", records[::-1])]:
        path = _jsonl(tmp_path / f"{name}.jsonl", order)
        built[name] = open_corpus(
            _data_cfg(path, tmp_path / "cache", tokenizer=tok, max_bytes_per_domain=None), log=_quiet
        )
    for d in many:
        entry = next(e for e in built["sorted"].manifest["domains"] if e["name"] == d)
        assert entry["split"] == "document" and entry["documents"] == len(many[d])
        split_sets = [{s: sorted(_documents(c, d, s)) for s in ("train", "validation", "test")} for c in built.values()]
        assert split_sets[0] == split_sets[1]  # the same documents in each split, whatever the file order
        held_out = set(split_sets[0]["validation"]) | set(split_sets[0]["test"])
        assert len(held_out) >= 4 and not held_out & set(split_sets[0]["train"])
        # held-out documents come from all over the file, not from its end
        positions = sorted(many[d].index(t) for t in held_out if t in many[d])
        assert positions[0] < len(many[d]) // 2
        total = sum(entry["tokens"].values())
        for split in ("validation", "test"):
            assert 0.005 * total <= entry["tokens"][split] <= 0.05 * total  # ~2 %


def test_byte_cap_is_an_even_sample_not_a_prefix(tmp_path, corpus):
    many = _many_docs()
    records = [("code", t) for t in many["code"]] + [("docs", t) for t in many["docs"]]
    path = _jsonl(tmp_path / "x.jsonl", records)
    size = sum(len(t.encode()) for t in many["code"])
    cap = size // 3
    built = open_corpus(
        _data_cfg(path, tmp_path / "cache", tokenizer=str(corpus.root / "tokenizer.json"), max_bytes_per_domain=cap),
        log=_quiet,
    )
    entry = next(e for e in built.manifest["domains"] if e["name"] == "code")
    assert 0.9 * cap <= entry["bytes"] <= cap and entry["input_bytes"] == size
    kept = [t for s in ("train", "validation", "test") for t in _documents(built, "code", s)]
    positions = sorted(many["code"].index(t) for t in kept if t in many["code"])
    assert len(positions) >= entry["documents"] - 3  # (a domain split by position cuts up to 3 documents)
    third = len(many["code"]) // 3
    # a third of the documents, spread over the whole file (a prefix would end at the first third)
    assert sum(p >= 2 * third for p in positions) > 0.2 * len(positions)


def _quick_text(root: Path, corpus_text_dir: Path) -> Path:
    return _tiny_text_corpus(root, corpus_text_dir, domains=("code", "legal", "docs"))


def test_changed_inputs_rebuild_the_corpus_and_say_why(tmp_path, corpus, corpus_text_dir):
    text = _quick_text(tmp_path / "text", corpus_text_dir)
    cfg = _data_cfg(text, tmp_path / "cache", tokenizer=str(corpus.root / "tokenizer.json"))
    first = open_corpus(cfg, log=_quiet)
    logs: list[str] = []
    assert open_corpus(cfg, log=logs.append).manifest["built_at"] == first.manifest["built_at"] and logs == []

    (text / "fonts").mkdir()
    (text / "fonts" / "a.txt").write_text(next(iter(sorted(_source_docs(corpus_text_dir, "fonts"))))[:20_000])
    again = open_corpus(cfg, log=logs.append)
    assert "fonts" in again.domains and any("rebuilding" in m and "domain 'fonts' added" in m for m in logs)

    logs.clear()
    (text / "legal" / "a.txt").write_text("Edited. " * 500)
    edited = open_corpus(cfg, log=logs.append)
    assert any("domain 'legal' changed" in m for m in logs)
    assert _documents(edited, "legal", "train") + _documents(edited, "legal", "validation") + _documents(
        edited, "legal", "test"
    ) != _documents(again, "legal", "train")

    logs.clear()
    shutil.rmtree(text / "fonts")
    assert open_corpus(cfg, log=logs.append).domains == ["code", "docs", "legal"]
    assert any("domain 'fonts' removed" in m for m in logs)
    assert len(list((tmp_path / "cache" / "corpora").iterdir())) == 1  # rebuilt in place, nothing left over


@pytest.mark.parametrize("damage", ["zeros", "shuffled"])
def test_same_size_damaged_token_file_fails_its_checksum(corpus_copy, damage, monkeypatch):
    path = corpus_copy / "code" / "train.bin"
    arr = np.fromfile(path, dtype=np.uint16)
    arr = np.zeros_like(arr) if damage == "zeros" else np.random.default_rng(0).permutation(arr)
    arr.tofile(path)
    with pytest.raises(CorpusError) as err:
        TokenCorpus(corpus_copy)  # a small corpus is verified whenever it opens
    assert str(path) in str(err.value) and "checksum" in str(err.value) and "rebuild" in str(err.value)
    lazy = TokenCorpus(corpus_copy, verify=False)  # what a corpus above VERIFY_ON_OPEN_BYTES does on open
    with pytest.raises(CorpusError, match="does not match its checksum"):
        lazy.verify()


def test_data_verify_flag_checks_checksums_of_a_large_corpus(tmp_path, corpus, corpus_text_dir, monkeypatch, capsys):
    from acodm_gym import cli
    from acodm_gym.data import token_corpus

    cache = tmp_path / "cache"
    args = ["data", f"data.corpus={corpus_text_dir}", f"data.cache_dir={cache}", "data.vocab_size=512"]
    copy = cache / "corpora" / corpus.root.name
    shutil.copytree(corpus.root, copy)
    assert cli.main([*args, "--verify"]) == 0 and "verified: every token file matches" in capsys.readouterr().out
    np.zeros(corpus.manifest["domains"][0]["tokens"]["test"], dtype=np.uint16).tofile(copy / "code" / "test.bin")
    monkeypatch.setattr(token_corpus, "VERIFY_ON_OPEN_BYTES", 0)  # as if the corpus were large: open does not hash
    assert open_corpus(load_config(small_config(corpus_text_dir, cache)).data, log=_quiet).root == copy
    assert cli.main([*args, "--verify"]) == 2
    assert f"{copy / 'code' / 'test.bin'} does not match its checksum" in capsys.readouterr().err


def test_binary_file_is_skipped_and_reported(tmp_path, corpus, corpus_text_dir):
    text = _quick_text(tmp_path / "text", corpus_text_dir)
    shutil.copy("/bin/ls", text / "code" / "ls")
    logs: list[str] = []
    built = open_corpus(
        _data_cfg(text, tmp_path / "cache", tokenizer=str(corpus.root / "tokenizer.json")), log=logs.append
    )
    entry = next(e for e in built.manifest["domains"] if e["name"] == "code")
    assert entry["binary_files"] == {"count": 1, "files": ["ls"]} and entry["documents"] == 1
    assert any("code: skipped 1 binary file(s): ls" in m for m in logs)
    assert all("\ufffd" not in doc for s in ("train", "validation", "test") for doc in _documents(built, "code", s))


def test_latin1_file_is_reported_and_decoded_with_data_encoding(tmp_path, corpus, corpus_text_dir):
    text = _quick_text(tmp_path / "text", corpus_text_dir)
    latin = ("Café crème, déjà vu, naïve façade. " * 300).encode("latin-1")
    (text / "legal" / "fr.txt").write_bytes(latin)
    tok = str(corpus.root / "tokenizer.json")
    logs: list[str] = []
    built = open_corpus(_data_cfg(text, tmp_path / "cache", tokenizer=tok), log=logs.append)
    entry = next(e for e in built.manifest["domains"] if e["name"] == "legal")
    assert entry["undecodable_bytes"] == 1800 and entry["undecodable_files"] == {"count": 1, "files": {"fr.txt": 1800}}
    assert any("legal" in m and "fr.txt (1800 bytes)" in m and "data.encoding=latin-1" in m for m in logs)
    for encoding in ("latin-1", "auto"):
        fixed = open_corpus(_data_cfg(text, tmp_path / "cache", tokenizer=tok, encoding=encoding), log=_quiet)
        entry = next(e for e in fixed.manifest["domains"] if e["name"] == "legal")
        docs = [doc for s in ("train", "validation", "test") for doc in _documents(fixed, "legal", s)]
        assert entry["undecodable_bytes"] == 0 and any("Café crème" in doc for doc in docs)


def test_unknown_encoding_is_a_config_error(tmp_path):
    from acodm_gym.config import ConfigError

    with pytest.raises(ConfigError, match="data.encoding='klingon' is not a known encoding"):
        _data_cfg(tmp_path, tmp_path / "cache", encoding="klingon")


def test_non_utf8_jsonl_names_the_line_and_the_setting(tmp_path, corpus):
    path = tmp_path / "latin.jsonl"
    lines = [json.dumps({"text": "plain text " * 50, "domain": d}) for d in ("a", "b")]
    lines.append(json.dumps({"text": "Café " * 100, "domain": "b"}, ensure_ascii=False))
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin.jsonl:3 is not UTF-8 .*data.encoding=latin-1"):
        build_corpus(_data_cfg(path, tmp_path / "cache"), log=_quiet)
    built = open_corpus(
        _data_cfg(path, tmp_path / "cache", encoding="latin-1", tokenizer=str(corpus.root / "tokenizer.json")),
        log=_quiet,
    )
    assert built.domains == ["a", "b"]


def test_truncated_jsonl_zst_is_named_as_truncated_zstd(tmp_path, corpus_text_dir):
    path = tmp_path / "pile.jsonl.zst"
    _write_jsonl(path, corpus_text_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorpusError, match=r"pile.jsonl.zst is truncated or corrupt zstd"):
        build_corpus(_data_cfg(path, tmp_path / "cache"), log=_quiet)


def test_huge_single_line_document_respects_the_byte_cap(tmp_path, corpus, corpus_text_dir):
    text = _quick_text(tmp_path / "text", corpus_text_dir)
    words = " ".join(sorted(_source_docs(corpus_text_dir, "legal"))).split()
    line = " ".join(words)
    (text / "legal" / "huge.txt").write_text((line + " ") * (3_000_000 // len(line) + 1))  # one 3 MB line
    cap = 1_000_000
    built = open_corpus(
        _data_cfg(text, tmp_path / "cache", tokenizer=str(corpus.root / "tokenizer.json"), max_bytes_per_domain=cap),
        log=_quiet,
    )
    entry = next(e for e in built.manifest["domains"] if e["name"] == "legal")
    assert entry["input_bytes"] > 3_000_000 and entry["bytes"] <= cap and entry["cut_documents"] == 1
    assert all(
        len(doc) <= MAX_PIECE_CHARS for s in ("train", "validation", "test") for doc in _documents(built, "legal", s)
    )


def test_one_domain_corpus_is_refused_for_mixing(tmp_path, corpus, corpus_text_dir):
    from acodm_gym.envs.pretrain_env import PretrainEnv

    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir, domains=("code",))
    cfg = small_config(text, tmp_path / "cache", data={"tokenizer": str(corpus.root / "tokenizer.json")})
    for agent in ("natural", "uniform"):
        with pytest.raises(CorpusError, match="has one domain \\(code\\): mixing needs at least two domains"):
            PretrainEnv({**cfg, "agent": {"name": agent}}, log=_quiet)


def test_a_domain_the_byte_cap_leaves_too_small_to_validate_names_the_cap(tmp_path, corpus, corpus_text_dir):
    from acodm_gym.envs.pretrain_env import PretrainEnv

    text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
    for d in ("code", "legal"):  # 40 documents of 500 bytes each
        doc = (text / d / "a.txt").read_text()
        (text / d / "a.txt").unlink()
        for i in range(40):
            (text / d / f"{i:02d}.txt").write_text(doc[i * 500 : (i + 1) * 500])
    data = {"tokenizer": str(corpus.root / "tokenizer.json"), "max_bytes_per_domain": 2000}
    with pytest.raises(CorpusError) as err:
        PretrainEnv(small_config(text, tmp_path / "cache", data=data), log=_quiet)
    message = str(err.value)
    assert "fewer than seq_len=32 validation tokens; data.max_bytes_per_domain=2000 kept" in message
    assert "raise data.val_fraction or data.max_bytes_per_domain" in message


@pytest.mark.parametrize("content", [b"{ not json at all", None])
def test_corrupt_tokenizer_is_found_when_the_corpus_opens(corpus_copy, content):
    path = corpus_copy / "tokenizer.json"
    if content is None:  # a valid tokenizer, but not the one the token files were made with
        toklib.train_bpe(["some other text " * 100], 280).save(str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(CorpusError) as err:
        TokenCorpus(corpus_copy)
    assert "tokenizer.json" in str(err.value) and "rebuild" in str(err.value) and "acodm-gym data" in str(err.value)


def test_missing_manifest_names_the_command_that_builds(tmp_path):
    with pytest.raises(CorpusError, match=r"build the corpus first \(acodm-gym data\)"):
        TokenCorpus(tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad input and faults, second round (issue 28): small domains, oversized documents, odd files


def test_a_small_jsonl_domain_sorted_by_source_has_both_sources_in_each_held_out_split(
    tmp_path, corpus, corpus_text_dir
):
    licences = "\n".join(sorted(_source_docs(corpus_text_dir, "legal")))
    legal = list(dict.fromkeys(licences[i : i + 800] for i in range(0, 800 * 150, 800)))
    code = [t for t in _many_docs()["code"] if t not in legal][:150]
    assert len(legal) == len(code) == 150
    other = _many_docs()["docs"][:100]
    records = [("mix", t) for t in legal + legal[:10] + code] + [("other", t) for t in other]  # sorted by source
    tok = str(corpus.root / "tokenizer.json")
    path = _jsonl(tmp_path / "sorted.jsonl", records)
    for seed in range(100):  # a seed whose document hash leaves a held-out split too small or too large
        built = open_corpus(_data_cfg(path, tmp_path / "cache", tokenizer=tok, seed=seed), log=_quiet)
        entry = next(e for e in built.manifest["domains"] if e["name"] == "mix")
        if entry["split"] != "document":
            break
    assert entry["split"] == "hash-order", "no seed below 100 falls back from the document split"
    splits = {s: _documents(built, "mix", s) for s in ("train", "validation", "test")}
    for split in ("validation", "test"):  # whole documents of both sources, none also in training
        n_legal, n_code = sum(t in legal for t in splits[split]), sum(t in code for t in splits[split])
        assert n_legal >= 1 and n_code >= 1 and n_legal + n_code == len(splits[split]), split
        assert not set(splits[split]) & set(splits["train"])
        total = sum(entry["tokens"].values())
        assert 0.005 * total <= entry["tokens"][split] <= 0.08 * total
    reverse = _jsonl(tmp_path / "reversed.jsonl", records[::-1])
    again = open_corpus(_data_cfg(reverse, tmp_path / "cache", tokenizer=tok, seed=seed), log=_quiet)
    for split in ("validation", "test"):  # the same documents whatever the file order
        assert sorted(_documents(again, "mix", split)) == sorted(splits[split])


def test_an_oversized_document_under_the_byte_cap_leaves_the_documents_that_fit(tmp_path, corpus, corpus_text_dir):
    text = _quick_text(tmp_path / "text", corpus_text_dir)
    words = " ".join(sorted(_source_docs(corpus_text_dir, "legal"))).split()
    line = " ".join(words)
    (text / "legal" / "huge.txt").write_text((line + " ") * (3_300_000 // len(line) + 1))  # one 3.3 MB line
    for i in range(3):  # three 0.4 MB documents that fit under the cap
        (text / "legal" / f"doc{i}.txt").write_text((f"{i} " + line + "\n") * (400_000 // len(line)))
    cap = 1_000_000
    for seed in range(4):
        built = open_corpus(
            _data_cfg(
                text,
                tmp_path / "cache",
                tokenizer=str(corpus.root / "tokenizer.json"),
                max_bytes_per_domain=cap,
                seed=seed,
            ),
            log=_quiet,
        )
        entry = next(e for e in built.manifest["domains"] if e["name"] == "legal")
        assert 0.6 * cap <= entry["bytes"] <= cap, (seed, entry["bytes"])  # about the cap, whatever the hash order
        assert len(built.tokens("legal", "validation")) >= 1000


def test_another_corpus_tokenizer_of_the_same_size_is_refused(corpus_copy, corpus_text_dir):
    texts = [t[::-1] for t in sorted(_source_docs(corpus_text_dir, "code") | _source_docs(corpus_text_dir, "docs"))]
    other = toklib.train_bpe(texts, 512)
    assert other.get_vocab_size() == 512 and other.to_str() != (corpus_copy / "tokenizer.json").read_text()
    other.save(str(corpus_copy / "tokenizer.json"))
    with pytest.raises(CorpusError) as err:
        TokenCorpus(corpus_copy)
    message = str(err.value)
    assert f"{corpus_copy / 'tokenizer.json'} is not the tokenizer" in message and "manifest.json" in message
    assert "acodm-gym data" in message


def test_a_corpus_built_before_tokenizer_digests_still_opens(corpus_copy):
    manifest = json.loads((corpus_copy / "manifest.json").read_text())
    assert manifest.pop("tokenizer_sha256")
    (corpus_copy / "manifest.json").write_text(json.dumps(manifest))
    assert TokenCorpus(corpus_copy).vocab_size == 512


def test_every_file_of_a_domain_is_read_or_listed_as_skipped(tmp_path, corpus, corpus_text_dir):
    text = _quick_text(tmp_path / "text", corpus_text_dir)
    legal = sorted(_source_docs(corpus_text_dir, "legal"))
    (text / "legal" / "UPPER.TXT").write_text(legal[1][:20_000])
    (text / "legal" / "guide.rst").write_text("Guide\n=====\n\n" + legal[2][:20_000])
    (text / "legal" / "page.html").write_text("<p>" + legal[3][:2000] + "</p>")
    (text / "legal" / "scan.pdf").write_text(legal[3][:2000])
    (text / "legal" / "gone.txt").symlink_to(tmp_path / "nowhere.txt")  # a dangling link
    (text / "legal" / "more").symlink_to(text / "code", target_is_directory=True)
    logs: list[str] = []
    built = open_corpus(
        _data_cfg(text, tmp_path / "cache", tokenizer=str(corpus.root / "tokenizer.json")), log=logs.append
    )
    entry = next(e for e in built.manifest["domains"] if e["name"] == "legal")
    ids = np.concatenate([built.tokens("legal", s) for s in ("train", "validation", "test")]).tolist()
    text_read = built.tokenizer().decode(ids, skip_special_tokens=False)
    assert entry["documents"] == 3 and "Guide\n=====\n\n" + legal[2][:20_000] in text_read
    assert legal[1][:20_000] in text_read
    skipped = entry["skipped_files"]
    assert skipped["count"] == 4 and set(skipped["files"]) == {"page.html", "scan.pdf", "gone.txt", "more"}
    assert "not a text file" in skipped["files"]["page.html"] and "dangling" in skipped["files"]["gone.txt"]
    assert "link to a directory" in skipped["files"]["more"]
    assert any("legal: skipped 4 file(s)" in m and "scan.pdf" in m and "gone.txt" in m for m in logs)


def test_a_jsonl_domain_value_that_is_not_a_name_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "lists.jsonl"
    path.write_text(
        json.dumps({"text": "x " * 100, "domain": "b"})
        + "\n"
        + json.dumps({"text": "y " * 100, "domain": ["a"]})
        + "\n"
    )
    with pytest.raises(CorpusError) as err:
        build_corpus(_data_cfg(path, tmp_path / "cache", vocab_size=300), log=_quiet)
    assert "lists.jsonl:2" in str(err.value) and "['a']" in str(err.value) and "data.domain_fields" in str(err.value)
    assert not list((tmp_path / "cache").rglob("manifest.json"))


def _proc_file(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        return "permission"
    except OSError:
        return "io"
    return "readable"


@pytest.mark.parametrize(
    "target, kind",
    [("/proc/sys/vm/drop_caches", "permission"), ("/proc/self/mem", "io")],  # real files that cannot be read
)
@pytest.mark.parametrize("layout", ["dir", "jsonl"])
def test_a_file_that_cannot_be_read_is_one_error_naming_it(tmp_path, corpus_text_dir, capsys, target, kind, layout):
    from acodm_gym import cli

    if _proc_file(target) != kind:
        pytest.skip(f"{target} is not a {kind} error on this system")
    if layout == "dir":
        text = _tiny_text_corpus(tmp_path / "text", corpus_text_dir)
        bad = text / "legal" / "b.txt"
    else:
        text = bad = tmp_path / "x.jsonl"
    bad.symlink_to(target)
    with pytest.raises(CorpusError) as err:
        build_corpus(_data_cfg(text, tmp_path / "cache", vocab_size=300), log=_quiet)
    assert str(bad) in str(err.value) and "cannot be read" in str(err.value)
    assert not list((tmp_path / "cache").rglob("*.bin"))  # before anything is written
    args = ["data", f"data.corpus={text}", f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=300"]
    assert cli.main(args) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and str(bad) in err_lines[0]
