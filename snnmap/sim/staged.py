"""Staged images (passes/stages.py) in the simulator: the host buffer, and what stages cost.

Function: a spike into the host buffer is replayed, count for count, to the slot's relay words
when their stage runs, so a host buffer word stands for its relay words. The simulator's gather
plans therefore see each buffer word replaced by the slot's relay words, and every word tagged
with its stage above the address bits (coordinates are unique only within a stage). Each core
still reads only spikes of the previous tick, from its own stage or from the buffer, which the
image reader checks; the buffer keeps a stage's output for the stages after it, so computing tick
by tick over all stages gives the same counts as running stage after stage (no neuron keeps state
between images or ticks).

Cost (docs/chips.md): stage s runs a batch of B images; per image it takes the host link
carrying the spikes into it (encoder and buffer, one packet per `cycles_per_packet`), its ticks
(each as long as its slowest core of that stage), and the host link carrying its spikes out to
the buffer; pipelined, a stage admits an image per longest of those, plus the first image's fill
spread over the batch. Before each stage the chip is reconfigured: the stage's configuration bits
over `config_bits_per_s`, once per batch. Energy: synaptic operations and packet hops as for one
configuration, the host's packets into the chip as hops from the host port, and static power over
the whole time, reconfiguration included.
"""

from __future__ import annotations

import numpy as np

from snnmap.chip import address


def tag(spec, words: np.ndarray, stage: np.ndarray) -> np.ndarray:
    return words | (np.asarray(stage, np.uint64) << np.uint64(address.address_bits(spec)))


def stage_key_shift(spec) -> int:
    """Where a stage sits in a core key (word >> core_shift)."""
    return address.address_bits(spec) - address.core_shift(spec)


def resolve(img, ptr: np.ndarray, words: np.ndarray, word_stage: np.ndarray, tick: int, canon: np.ndarray):
    """Sources of one tick as the chip sees them over all stages: buffer words replaced by their
    relay words, every word tagged with its stage. Returns (ptr, words, io): io holds, per buffer
    row that sends to or through the host, its packets and hops per spike into each stage
    (column s) and out of each stage into the buffer (column S + s), sorted by column."""
    spec, S = img.spec, img.stages
    ptr = ptr.astype(np.int64)
    owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    host_port = (0, 0, 0, 0)
    if tick == 0:  # the encoder: every word is a packet from the host into its stage
        is_buf = np.zeros(len(words), dtype=bool)
        hops = 1 + address.route_hops(spec, host_port, address.decode(spec, words)[1:5])
        rows, cols, pk, hp = canon[owner], word_stage.astype(np.int64), np.ones(len(words)), hops
        out_words = tag(spec, words, word_stage)
        new_ptr = ptr
    else:
        is_buf = (words & address.HOST_FLAG) != 0
        slot = (words[is_buf] & ~address.HOST_FLAG).astype(np.int64)
        rptr = img.relay_ptr.astype(np.int64)
        cnt = np.ones(len(words), dtype=np.int64)
        cnt[is_buf] = rptr[slot + 1] - rptr[slot]
        new_ptr = np.zeros(len(ptr), dtype=np.int64)
        np.cumsum(np.bincount(owner, weights=cnt, minlength=len(ptr) - 1).astype(np.int64), out=new_ptr[1:])
        out_words = np.zeros(int(cnt.sum()), dtype=np.uint64)
        start = np.cumsum(cnt) - cnt
        keep = ~is_buf
        out_words[start[keep]] = tag(spec, words[keep], word_stage[keep])
        # relay lists of the buffer words, in place
        bcnt = cnt[is_buf]
        ridx = np.repeat(rptr[slot], bcnt) + np.arange(int(bcnt.sum())) - np.repeat(np.cumsum(bcnt) - bcnt, bcnt)
        pos = np.repeat(start[is_buf], bcnt) + np.arange(int(bcnt.sum())) - np.repeat(np.cumsum(bcnt) - bcnt, bcnt)
        rwords, rstage = img.relay_dest[ridx], img.relay_stage[ridx].astype(np.int64)
        out_words[pos] = tag(spec, rwords, rstage)
        # io: a spike into the buffer is one packet out of its stage; each relay word one into its
        rhops = 1 + address.route_hops(spec, host_port, address.decode(spec, rwords)[1:5])
        b_owner = owner[is_buf]
        rows = np.concatenate([canon[b_owner], canon[np.repeat(b_owner, bcnt)]])
        cols = np.concatenate([S + word_stage[is_buf].astype(np.int64), rstage])
        pk = np.ones(len(rows))
        hp = np.concatenate([np.zeros(len(b_owner)), rhops])
    order = np.lexsort((rows, cols))
    rows, cols, pk, hp = rows[order], cols[order], pk[order], hp[order]
    # one entry per (column, row)
    first = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])]) if len(rows) \
        else np.zeros(0, np.int64)
    io = {"rows": rows[first], "cols": cols[first],
          "packets": np.add.reduceat(pk, first) if len(first) else np.zeros(0),
          "hops": np.add.reduceat(hp.astype(np.float64), first) if len(first) else np.zeros(0)}
    c = io["cols"]
    io["starts"] = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if len(c) else np.zeros(0, np.int64)
    io["which"] = c[io["starts"]]
    return new_ptr, out_words, io


def account(io: dict, buf: np.ndarray, acc_io: np.ndarray, acc_hops: np.ndarray) -> None:
    """Add one tick's host traffic (spike buffer rows x packets per spike) to the accumulators."""
    if not len(io["rows"]):
        return
    spikes = buf[io["rows"]].astype(np.float64)
    acc_io[io["which"]] += np.add.reduceat(spikes * io["packets"][:, None], io["starts"], axis=0)
    acc_hops += io["hops"] @ spikes


def per_stage_max(cycles: np.ndarray, stage: np.ndarray, S: int) -> np.ndarray:
    """(S, batch): the slowest core of each stage (0 where a stage has none at this tick)."""
    out = np.zeros((S, cycles.shape[1]))
    order = np.argsort(stage, kind="stable")
    st = stage[order]
    starts = np.flatnonzero(np.r_[True, st[1:] != st[:-1]])
    out[st[starts]] = np.maximum.reduceat(cycles[order], starts, axis=0)
    return out


def cost(spec, chips: int, stage_cycles: np.ndarray, io: np.ndarray, config_bits: np.ndarray, batch: int,
         sops: np.ndarray, hops: np.ndarray) -> dict:
    """Time and energy per image of a staged image run in batches of `batch` (see the module)."""
    S = stage_cycles.shape[0]
    host_in = spec.cycles_per_packet * io[:S]  # (S, n)
    host_out = spec.cycles_per_packet * io[S:]
    terms = np.concatenate([host_in[:, None], stage_cycles[:, 1:], host_out[:, None]], axis=1)  # (S, T+2, n)
    lat = terms.sum(axis=1)
    per = terms.max(axis=1)
    run_s = (per + (lat - per) / batch) / spec.clock_hz  # (S, n): a stage's time per image, pipelined
    reconf_s = config_bits / spec.config_bits_per_s  # (S,) per batch
    stage_s = run_s + reconf_s[:, None] / batch
    time_s = stage_s.sum(axis=0)
    energy = spec.energy_per_sop_j * sops + spec.energy_per_hop_j * hops + spec.static_power_w * chips * time_s
    tick_s = np.concatenate([host_in.sum(axis=0)[None], stage_cycles[:, 1:].sum(axis=0)]) / spec.clock_hz
    # every image of a batch waits for the whole batch: the time from the first image in to the
    # last result out
    batch_s = (time_s.mean() * batch) if time_s.size else 0.0
    return {"latency_s": time_s, "period_s": time_s, "energy_j": energy, "tick_s": tick_s,
            "energy_sop_j": spec.energy_per_sop_j * sops, "energy_hop_j": spec.energy_per_hop_j * hops,
            "stages": {"count": S, "batch": batch, "batch_s": batch_s, "stage_s": stage_s, "run_s": run_s,
                       "reconfiguration_s_per_batch": reconf_s, "config_bits": config_bits,
                       "host_in_packets": io[:S], "host_out_packets": io[S:],
                       "stage_cycles": stage_cycles, "host_io": io,  # to re-cost another batch size
                       "reconfiguration_share": float(reconf_s.sum() / batch / max(time_s.mean(), 1e-300))
                       if time_s.size else 0.0}}
