"""Each pipeline stage in isolation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scinrcodec.errors import CorruptFileError
from scinrcodec.stages import get_stage
from scinrcodec.stages.bitmap import GolombBitmap, golomb_parameter
from scinrcodec.stages.entropy import AnsCoder, new_decoders
from scinrcodec.stages.predictor import Normalisation
from scinrcodec.stages.quantise import ValueQuantiser, WeightQuantiser
from scinrcodec.stages.siren import SINE_TABLE, IntegerSiren, centred_coordinates
from scinrcodec.stages.tiling import RowBandTiling
from scinrcodec.stages.values import (BIN_OFFSET_BITS, BIN_START, CONTEXT_EDGES, N_CONTEXTS, ContextValueCoder,
                                      context_of_mean, offset_bit_array, pack_bits, read_bits, to_bins)


def new_decoder(words: np.ndarray) -> AnsCoder:
    """A decoder over one whole coded stream."""
    return new_decoders(words, [0], [words.size])[0]

@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_bitmap_round_trip(n_entries, data):
    k = data.draw(st.integers(0, n_entries))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    positions = np.sort(rng.choice(n_entries, size=k, replace=False)).astype(np.int64)
    coder = AnsCoder()
    GolombBitmap().encode_tile(coder, positions, n_entries)
    decoder = new_decoder(coder.get_compressed())
    assert np.array_equal(GolombBitmap().decode_tile(decoder, k, n_entries), positions)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 600), st.floats(0, 1)), min_size=1, max_size=12), st.integers(0, 2**32 - 1))
def test_bitmap_decodes_mixed_tiles_together(tiles, seed):
    """Several tiles at once (empty, sparse, more than half full, full) decode as each alone."""
    rng = np.random.default_rng(seed)
    coders, nonzeros, entries, expected = [], [], [], []
    for n_entries, density in tiles:
        positions = np.sort(rng.choice(n_entries, size=int(density * n_entries), replace=False)).astype(np.int64)
        coder = AnsCoder()
        GolombBitmap().encode_tile(coder, positions, n_entries)
        coders.append(new_decoder(coder.get_compressed()))
        nonzeros.append(positions.size)
        entries.append(n_entries)
        expected.append(positions)
    assert np.array_equal(GolombBitmap().decode_tiles(coders, nonzeros, entries), np.concatenate(expected))


def test_bitmap_escapes_long_gaps():
    """A gap far beyond the mean needs the escaped quotient (63 and above)."""
    positions = np.concatenate([np.arange(100), np.arange(99_900, 100_000)])
    for n_entries in (100_000, 2**24 - 1):
        coder = AnsCoder()
        GolombBitmap().encode_tile(coder, positions, n_entries)
        decoded = GolombBitmap().decode_tile(new_decoder(coder.get_compressed()), positions.size, n_entries)
        assert np.array_equal(decoded, positions)


def test_bitmap_cost_is_near_the_binomial_bound():
    rng = np.random.default_rng(0)
    n, k = 20000, 400
    positions = np.sort(rng.choice(n, size=k, replace=False))
    coder = AnsCoder()
    GolombBitmap().encode_tile(coder, positions, n)
    from math import comb, log2

    bound = log2(comb(n, k))
    assert coder.num_bits() < 1.05 * bound + 64
    assert golomb_parameter(n, k) == pytest.approx(0.69 * n / k, rel=0.02)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**31 - 2), min_size=1, max_size=200))
def test_value_bins_round_trip(values):
    u = np.asarray(values, dtype=np.int64)
    bins, offsets, offset_bits = to_bins(u)
    assert np.array_equal(BIN_START[bins] + offsets, u)
    assert np.array_equal(BIN_OFFSET_BITS[bins], offset_bits) and np.all(offsets < 1 << offset_bits)


def test_value_coder_round_trip_with_contexts():
    rng = np.random.default_rng(3)
    u = np.concatenate([rng.geometric(0.4, 3000) - 1, rng.integers(0, 2**31 - 2, 50)])
    contexts = rng.integers(0, N_CONTEXTS, u.size)
    coder = ContextValueCoder()
    coder.fit(to_bins(u)[0], contexts)
    restored = ContextValueCoder.unpack(coder.pack())
    ans = AnsCoder()
    offset_bits = coder.encode_tile(ans, u, contexts)
    assert offset_bits.size == int(to_bins(u)[2].sum())
    words = np.concatenate([np.zeros(1, np.uint32), pack_bits(np.concatenate([np.ones(32, np.uint8), offset_bits]))])
    compressed = ans.get_compressed()  # the tile's offsets start at bit 64, after two other words

    def decode(needed=None, end=64 + offset_bits.size):
        return restored.decode_tiles([new_decoder(compressed)], words, [64], [end], contexts, [u.size], needed)

    assert np.array_equal(decode(), u)
    probes = np.concatenate([rng.integers(0, 3000, 40), np.arange(3000, u.size)])
    assert all(restored.decode_one(new_decoder(compressed), words, 64, 64 + offset_bits.size, contexts, int(i)) == u[i]
               for i in probes)
    needed = np.zeros(u.size, dtype=bool)
    needed[probes[:20]] = True
    assert np.array_equal(decode(needed)[needed], u[needed])
    with pytest.raises(CorruptFileError):
        decode(end=63 + offset_bits.size)


def test_offset_bits_pack_and_read_back():
    rng = np.random.default_rng(5)
    widths = rng.integers(0, 29, 500)
    values = rng.integers(0, 1 << 28, 500) & ((1 << widths) - 1)
    words = pack_bits(offset_bit_array(values, widths))
    starts = np.cumsum(widths) - widths
    assert words.dtype == np.uint32 and words.size == -(-int(widths.sum()) // 32)
    assert np.array_equal(read_bits(words, starts, widths, 32 * words.size), values)


def test_context_tables_are_platform_proof():
    scaled = np.expm1(np.arange(N_CONTEXTS) / 4) * 2.0**20
    assert np.all(np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6)
    assert np.array_equal(context_of_mean(CONTEXT_EDGES), np.arange(N_CONTEXTS))
    assert SINE_TABLE[0] == 0 and SINE_TABLE[1024] == 4096 and SINE_TABLE[3072] == -4096


def test_integer_siren_is_batch_invariant_and_tracks_float_network():
    rng = np.random.default_rng(5)
    weights = [rng.uniform(-0.5, 0.5, (2, 16)), rng.uniform(-0.08, 0.08, (16, 16)), rng.uniform(-0.5, 0.5, (16, 1))]
    biases = [rng.uniform(-0.5, 0.5, 16), rng.uniform(-0.2, 0.2, 16), rng.uniform(-0.5, 0.5, 1)]
    rows, cols = rng.integers(0, 40, 500), rng.integers(0, 300, 500)
    coords = centred_coordinates(rows, cols, 40, 300)
    scale = (1 / 299, 1 / 299)
    net = WeightQuantiser().quantise(weights, biases, 12, scale)
    whole = net.predict(coords)
    one_by_one = np.concatenate([net.predict(coords[i: i + 1]) for i in range(coords.shape[0])])
    assert np.array_equal(whole, one_by_one)
    x = coords * np.asarray(scale)
    h = np.sin(30 * (x @ weights[0] + biases[0]))
    h = np.sin(30 * (h @ weights[1] + biases[1]))
    reference = (h @ weights[2] + biases[2])[:, 0]
    assert np.max(np.abs(whole / 4096 - reference)) < 0.05
    rebuilt = IntegerSiren.from_meta(net.to_meta(), net.flat_parameters())
    assert np.array_equal(rebuilt.predict(coords), whole)


def test_integer_siren_rejects_bad_metadata():
    with pytest.raises(CorruptFileError):
        IntegerSiren.from_meta([[4, 2, 1, 1, 80]], np.zeros(12, dtype=np.int64))
    with pytest.raises(CorruptFileError):
        IntegerSiren.from_meta([[4, 2, 1, 1, 3], [1, 4, 1, 1, 3]], np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("kind", ["none", "minmax", "log"])
def test_normalisations_invert(kind):
    values = np.array([1, 2, 5, 40, 700])
    norm = Normalisation.fit(kind, values)
    outputs = np.rint(norm.forward(values) * 4096).astype(np.int64)
    assert np.allclose(norm.means(outputs), values, rtol=0.01, atol=norm.scale / 4096)


@pytest.mark.parametrize("bound", [0, 1, 4, 100])
def test_value_quantiser_bound(bound):
    values = np.arange(1, 5000)
    q = ValueQuantiser(bound)
    assert np.all(np.abs(q.decode(q.encode(values)) - values) <= bound)


def test_tiling_balances_and_bounds_tiles():
    tiling = RowBandTiling(tile_nnz=100)
    row_nnz = np.sort(np.random.default_rng(0).integers(1, 500, 3000))[::-1]
    geometry = tiling.plan(row_nnz, 600)
    assert geometry.row_starts[-1] == row_nnz.size
    band_nnz = np.add.reduceat(row_nnz, geometry.row_starts[:-1])
    assert np.all(band_nnz[:-1] >= tiling.balanced_patch_nnz(int(row_nnz.sum())))


def test_stage_registry_round_trips_configs():
    for stage in (RowBandTiling(1000, 64), ValueQuantiser(3), GolombBitmap()):
        rebuilt = get_stage(stage.get_config())
        assert type(rebuilt) is type(stage) and rebuilt.get_config() == stage.get_config()
    with pytest.raises(CorruptFileError):
        get_stage({"id": "no-such-stage"})
    with pytest.raises(CorruptFileError):
        get_stage({"id": "row-bands", "tile_nnz": -4})
